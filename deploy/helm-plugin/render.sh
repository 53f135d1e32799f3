#!/bin/sh
# Helm post-renderer: manifests on stdin, the same manifests with mapped images on stdout. The
# arguments are helm's --post-renderer-args (give --config=maps.yaml: pullmap refuses to run without maps).
# pullmap is $PULLMAP when set, a path or a command line ("node /opt/pullmap/dist/pullmap.js"), else
# `pullmap` on PATH.
set -eu
# Helm 4.3 collects a plugin post-renderer's stderr into a buffer it never prints (internal/plugin/
# runtime_subprocess.go), so a failed render would only say "plugin exited with error". As a Helm 4
# plugin (HELM_PLUGIN_DIR is set), write pullmap's messages to Helm's own stderr instead, when allowed.
# (A terminal, a pipe or a file can be opened there again; a socket cannot, and then nothing changes.)
if [ -n "${HELM_PLUGIN_DIR:-}" ] && { : 2>>"/proc/$PPID/fd/2"; } 2>/dev/null; then
  exec 2>>"/proc/$PPID/fd/2"
fi
if [ -n "${PULLMAP:-}" ]; then
  # Unquoted on purpose: PULLMAP may be a command with arguments.
  # shellcheck disable=SC2086
  exec $PULLMAP rewrite -f - "$@"
fi
if command -v pullmap >/dev/null 2>&1; then
  exec pullmap rewrite -f - "$@"
fi
echo "pullmap post-renderer: no pullmap on PATH and PULLMAP is not set; in the pullmap checkout (after npm install and npm run build): export PULLMAP=\"\$PWD/node_modules/.bin/node \$PWD/dist/pullmap.js\"" >&2
exit 127
