#!/usr/bin/env bash
# Builds a Go tool the tests need (no Debian package ships a current one) with `go install` from the Go
# module proxy, and caches the binary outside the repo; prints its path on stdout. Cached runs return at
# once. The versions are pinned here, in one table.
#   usage: scripts/go-tool.sh NAME               # build if needed, print path
#          scripts/go-tool.sh NAME --cached-only # never build: exit 3 if not cached (test harness)
#   NAME:  helm | crictl | weed
#   env:   PULLMAP_CACHE (default ~/.cache/pullmap)
set -euo pipefail

die() {
  echo "go-tool.sh: $*" >&2
  exit 1
}

name="${1:-}"
case "$name" in
  helm) package=helm.sh/helm/v4/cmd/helm version=v4.3.2 ;;
  crictl) package=sigs.k8s.io/cri-tools/cmd/crictl version=v1.37.0 ;;
  # SeaweedFS's go.mod has replace directives, which `go install pkg@version` refuses: it is built
  # inside its downloaded module (where they apply) instead.
  weed) package=github.com/seaweedfs/seaweedfs/weed version=v0.0.0-20261109003541-7506e5f91cd6 module=github.com/seaweedfs/seaweedfs ;;
  *) die "unknown tool '$name' (usage: $0 helm|crictl|weed [--cached-only])" ;;
esac
cached_only=false
case "${2:-}" in
  "") ;;
  --cached-only) cached_only=true ;;
  *) die "unknown argument '$2' (usage: $0 NAME [--cached-only])" ;;
esac

cache="${PULLMAP_CACHE:-$HOME/.cache/pullmap}"
binary="$cache/$name-$version"
if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi
if $cached_only; then
  echo "go-tool.sh: $binary is not built yet; run scripts/go-tool.sh $name once (a few minutes)" >&2
  exit 3
fi

command -v go >/dev/null 2>&1 || PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null 2>&1 || die "no Go toolchain: install Go or put it at /usr/local/go/bin/go"
mkdir -p "$cache"
# Parallel test files may ask at once: one builds, the others wait and reuse its result.
exec 9>"$cache/$name.lock"
flock 9
if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/pullmap-$name-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log="$cache/$name-$version.build.log"
echo "go-tool.sh: building $package@$version with $(go version) (log $log)" >&2
started=$SECONDS
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
: >"$log"
if [[ -n "${module:-}" ]]; then
  if ! dir="$(go mod download -json "$module@$version" 2>>"$log" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" ||
    [[ -z "$dir" ]] ||
    ! (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$work/$(basename "$package")" "./${package#"$module"/}") >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "go build of $package@$version failed (full log: $log)"
  fi
elif ! GOBIN="$work" go install -trimpath -ldflags "-s -w" "$package@$version" >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  die "go install $package@$version failed (full log: $log)"
fi
# Rename into place only when complete, so an interrupted build never leaves a broken cached binary.
mv -f "$work/$(basename "$package")" "$binary.tmp"
mv -f "$binary.tmp" "$binary"
echo "go-tool.sh: built $binary in $((SECONDS - started)) s" >&2
echo "$binary"
