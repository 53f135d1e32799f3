#!/bin/sh
# Helm post-renderer: manifests on stdin, the same manifests with mapped images on stdout. The
# arguments are helm's --post-renderer-args (give --config=maps.yaml: pullmap refuses to run without maps).
# pullmap is $PULLMAP when set, a path or a command line ("node /opt/pullmap/dist/pullmap.js"), else
# `pullmap` on PATH.
set -eu
if [ -n "${PULLMAP:-}" ]; then
  # Unquoted on purpose: PULLMAP may be a command with arguments.
  # shellcheck disable=SC2086
  exec $PULLMAP rewrite -f - "$@"
fi
if command -v pullmap >/dev/null 2>&1; then
  exec pullmap rewrite -f - "$@"
fi
echo "pullmap post-renderer: no pullmap on PATH; run \"npm link\" in the pullmap checkout (after npm install and npm run build), or set PULLMAP=/path/to/pullmap" >&2
exit 127
