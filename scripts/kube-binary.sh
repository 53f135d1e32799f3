#!/usr/bin/env bash
# Builds a Kubernetes component (kube-apiserver, kubelet, kube-controller-manager, kube-scheduler) from Go
# modules (no distro ships a current one) and caches the binary outside the repo; prints the binary's path
# on stdout. Cached runs return at once. All come from one release, so the e2e cluster's parts match.
# See ../shared/test-infra.md §5.
#   usage: scripts/kube-binary.sh COMPONENT                # build if needed, print path
#          scripts/kube-binary.sh COMPONENT --cached-only  # never build: exit 3 if not cached (test harness)
#   env:   PULLMAP_CACHE (default ~/.cache/pullmap), KUBE_VERSION (override the pin)
set -euo pipefail

# Newest 1.35 patch release on the Go module proxy that builds with go1.26 (checked 2025-11).
version="${KUBE_VERSION:-${KUBE_APISERVER_VERSION:-1.35.4}}"
cache="${PULLMAP_CACHE:-$HOME/.cache/pullmap}"

die() {
  echo "kube-binary.sh: $*" >&2
  exit 1
}

component="${1:-}"
case "$component" in
  kube-apiserver | kubelet | kube-controller-manager | kube-scheduler) ;;
  *) die "unknown component '$component' (usage: $0 kube-apiserver|kubelet|kube-controller-manager|kube-scheduler [--cached-only])" ;;
esac
binary="$cache/$component-v$version"
cached_only=false
case "${2:-}" in
  "") ;;
  --cached-only) cached_only=true ;;
  *) die "unknown argument '$2' (usage: $0 COMPONENT [--cached-only])" ;;
esac

# Fast path first: no Go, no locks, so tests can call this on every start.
if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi
if $cached_only; then
  echo "kube-binary.sh: $binary is not built yet; run scripts/kube-binary.sh $component once (10-15 min)" >&2
  exit 3
fi

command -v go >/dev/null 2>&1 || PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null 2>&1 || die "no Go toolchain: install Go >= 1.25 or put it at /usr/local/go/bin/go"
[[ "$version" =~ ^1\.([0-9]+)\.([0-9]+)$ ]] || die "version '$version' is not of the form 1.MINOR.PATCH"
staging="v0.${version#1.}" # staging modules (k8s.io/api, ...) are tagged v0.<minor>.<patch>
minor="${BASH_REMATCH[1]}"

mkdir -p "$cache"
# Parallel test files may all ask at once: one builds, the others wait and reuse its result.
exec 9>"$cache/$component.lock"
flock 9
if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi

export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
work="$(mktemp -d "${TMPDIR:-/tmp}/pullmap-$component-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log="$cache/$component-v$version.build.log"
echo "kube-binary.sh: building $component v$version with $(go version) (first time: 10-15 min; log $log)" >&2
started=$SECONDS

step() {
  # Runs one build step with its output in the log; on failure shows the log's tail and why.
  local what="$1"
  shift
  if ! "$@" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "$what failed for v$version (full log: $log)"
  fi
}

: >"$log"
cd "$work"
step "go mod init" go mod init local/$component-build
# `go install k8s.io/kubernetes/...@v` refuses modules with replace directives, so this wrapper module
# replaces every staging module (required as v0.0.0) by its published tag instead.
# `go mod download -json` reports failures in its JSON "Error" field on stdout, not on stderr.
download="$(go mod download -json "k8s.io/kubernetes@v$version" 2>>"$log")" || true
gomod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$download")"
[[ -n "$gomod" && -f "$gomod" ]] || {
  echo "$download" | grep '"Error"' >&2 || tail -n 20 "$log" >&2
  die "cannot download k8s.io/kubernetes@v$version from the Go module proxy ($(go env GOPROXY))"
}
replaces=()
while read -r mod; do
  replaces+=("-replace=$mod=$mod@$staging")
done < <(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' "$gomod")
((${#replaces[@]})) || die "found no staging modules in $gomod"
step "go mod edit" go mod edit "${replaces[@]}" "-require=k8s.io/kubernetes@v$version"
printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/%s/app"\n' "$component" >tools.go
step "go mod tidy" go mod tidy
pkg=k8s.io/component-base/version
step "go build" go build -trimpath \
  -ldflags "-s -w -X $pkg.gitVersion=v$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" \
  -o "$work/$component" "k8s.io/kubernetes/cmd/$component"
"$work/$component" --version >>"$log" 2>&1 || die "the built binary does not run (log: $log)"

# Rename into place only when complete, so an interrupted build never leaves a broken cached binary.
mv -f "$work/$component" "$binary.tmp"
mv -f "$binary.tmp" "$binary"
echo "kube-binary.sh: built $binary in $((SECONDS - started)) s" >&2
echo "$binary"
