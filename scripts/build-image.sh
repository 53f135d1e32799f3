#!/usr/bin/env bash
# Builds the pullmap container image without any base image from outside: a minimal Debian rootfs made
# by mmdebstrap from Debian's packages (what a distroless image holds), the Node 24 binary the project
# installs from npm, and a fresh esbuild bundle. The filesystem layout, user, entrypoint and Node flags
# are the Dockerfile's final stage; keep the two in step.
#
#   usage: scripts/build-image.sh [--output FILE] [--push REF] [--refresh-rootfs]
#     --output FILE     the OCI archive to write (default .tmp/image/pullmap-VERSION.oci.tar in the
#                       repo); written atomically, so a reader never sees half an archive
#     --push REF        also copy the image to a registry with skopeo, digest preserved
#                       (e.g. 127.0.0.1:5000/pullmap:0.1.0; plain HTTP for loopback hosts)
#     --refresh-rootfs  rebuild the cached Debian layer (picks up Debian's updates; changes the digest)
#   stdout: exactly one line, the archive's path. Progress, the digest and the Debian package versions go
#   to stderr. Exit 0 on success, 1 with a "build-image.sh: ..." message on any failure, 2 on bad flags.
#   env:   SOURCE_DATE_EPOCH (default: the commit time of HEAD), PULLMAP_CACHE (default ~/.cache/pullmap),
#          DEBIAN_SUITE (default bookworm), DEBIAN_MIRROR (default: mmdebstrap's own choice).
#   needs: root (mmdebstrap's root mode; files owned by 0 and 65532), mmdebstrap, umoci, skopeo, GNU tar,
#          and node_modules installed (`npm install`).
#
# Image: three layers, so an upgrade of pullmap re-ships only its own few MB:
#   1. Debian: libc6, libgcc-s1, libstdc++6 (what the Node binary links), tzdata, ca-certificates (the
#      bundle /etc/ssl/certs/ca-certificates.crt), os-release, copyright files, a dpkg status.d entry per
#      package for vulnerability scanners, /etc/passwd and /etc/group with distroless's users (root,
#      nobody, nonroot 65532), /home/nonroot, /tmp. No shell, no package manager, no other binary, and
#      not glibc's gconv modules (8 MB of iconv charsets; Node converts with its own ICU).
#   2. /nodejs/bin/node, byte for byte the binary of the `node` npm package (node_modules/node).
#   3. /app/dist: `node scripts/build.ts` into a fresh directory.
#
# Reproducible: layers are tars written by GNU tar with sorted names, numeric owners, no atime/ctime
# and fixed mtimes (0 for the Debian and Node layers, so they are shared across pullmap versions;
# SOURCE_DATE_EPOCH for the app layer); the config's `created` is SOURCE_DATE_EPOCH and the image has
# history entries (one per layer) carry that time too. What still varies between two machines: Debian's packages when Debian publishes
# updates (the mirror has no snapshot we can reach), the Node binary when package-lock.json moves.
#
# Assembled with umoci, not buildah: `umoci raw add-layer` takes our tar verbatim (buildah commit
# re-tars the files from its storage, with its own ordering and timestamps), needs no storage driver or
# containers.conf, and writes a plain OCI layout we then tar like the layers.
#
# The Debian layer is cached under $PULLMAP_CACHE/image/, keyed by suite, mirror, architecture, package
# list, mmdebstrap's version and the source of make_rootfs below: reusing it returns the same bytes, so
# it keeps builds reproducible (more so than asking the mirror again). --refresh-rootfs rebuilds it.
set -euo pipefail
umask 022
export LC_ALL=C

die() {
  echo "build-image.sh: $*" >&2
  exit 1
}
usage() {
  echo "usage: scripts/build-image.sh [--output FILE] [--push REF] [--refresh-rootfs]" >&2
  exit "${1:-2}"
}
log() { echo "build-image.sh: $*" >&2; }

caller_dir="$PWD"
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

output=""
push=""
refresh=false
while (($#)); do
  case "$1" in
    --output) [[ $# -ge 2 ]] || usage; output="$2"; shift 2 ;;
    --output=*) output="${1#*=}"; shift ;;
    --push) [[ $# -ge 2 ]] || usage; push="$2"; shift 2 ;;
    --push=*) push="${1#*=}"; shift ;;
    --refresh-rootfs) refresh=true; shift ;;
    -h | --help) usage 0 ;;
    *) echo "build-image.sh: unknown argument '$1'" >&2; usage ;;
  esac
done

[[ $(id -u) == 0 ]] || die "must run as root (mmdebstrap's root mode, and files owned by 0 and 65532)"
for tool in mmdebstrap umoci tar dpkg-deb sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is not installed; run 'bash scripts/test-prereqs.sh' once or apt-get install it"
done
[[ -z $push ]] || command -v skopeo >/dev/null || die "skopeo is not installed (needed for --push)"

# The real ELF binary of the `node` npm package (node_modules/node/bin/node is a hard link to it; on
# some installs it is a launcher script, so look for the platform package too).
arch="$(dpkg --print-architecture)"
case "$arch" in
  amd64) triplet=x86_64-linux-gnu node_platform=linux-x64 ;;
  arm64) triplet=aarch64-linux-gnu node_platform=linux-arm64 ;;
  *) die "unsupported architecture $arch (amd64 and arm64 are)" ;;
esac
node_pkg="node_modules/node/node_modules/node-$node_platform"
node_bin=""
for candidate in "$node_pkg/bin/node" node_modules/node/bin/node; do
  if [[ -f $candidate && $(head -c 4 "$candidate" | od -An -c | tr -d ' ') == '177ELF' ]]; then
    node_bin="$candidate"
    break
  fi
done
[[ -n $node_bin ]] || die "no Node binary in node_modules/node; run 'npm install --no-audit --no-fund'"
node_version="$("$node_bin" --version)"
[[ $node_version == v24.* ]] || die "node_modules has Node $node_version; the image needs Node 24"

version="$("$node_bin" -p 'require("./package.json").version')"
if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
  SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null)" || die "not a git checkout: set SOURCE_DATE_EPOCH"
fi
export SOURCE_DATE_EPOCH
created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
# A relative --output is relative to where the script was started; the default lies in the repo.
[[ -z $output || $output == /* ]] || output="$caller_dir/$output"
output="${output:-$repo/.tmp/image/pullmap-$version.oci.tar}"
mkdir -p "$(dirname "$output")"
output="$(cd "$(dirname "$output")" && pwd)/$(basename "$output")"

suite="${DEBIAN_SUITE:-bookworm}"
mirror="${DEBIAN_MIRROR:-}"
cache="${PULLMAP_CACHE:-$HOME/.cache/pullmap}/image"
# What the image keeps, and the dpkg dependencies they pull in that it does not (openssl, libssl3,
# debconf, mawk: Node links OpenSSL statically, and nothing in the image runs a script).
packages=(base-files libc6 libgcc-s1 gcc-12-base libstdc++6 tzdata ca-certificates)

# The work directory lives in the repo at a fixed depth: esbuild writes source paths relative to its
# output directory into the source maps, and those must not depend on where the build ran.
mkdir -p .tmp
work="$(mktemp -d "$repo/.tmp/build-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# A layer tar of DIR's contents: sorted, numeric owners as on disk, no atime/ctime, every mtime MTIME.
layer_tar() {
  local dir="$1" out="$2" mtime="$3"
  tar --create --file "$out" --directory "$dir" --sort=name --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --numeric-owner --mtime="@$mtime" --no-xattrs --no-acls --no-selinux \
    $(cd "$dir" && LC_ALL=C ls -A)
}

# Debian's part of the image, in $1: mmdebstrap extracts the packages (no maintainer scripts run in the
# extract variant), then only the listed paths are copied out, and the files maintainer scripts or
# distroless would have written are written here.
make_rootfs() {
  local root="$1" debian="$work/debian"
  local include
  include="$(IFS=,; echo "${packages[*]}")"
  mmdebstrap --quiet --variant=extract --include="$include" --skip=cleanup/apt/cache --skip=output/dev \
    "$suite" "$debian" ${mirror:+"$mirror"} >&2 || die "mmdebstrap failed (is Debian's mirror reachable?)"
  local keep=(
    lib64 "lib/$triplet" $(cd "$debian" && echo "usr/lib/$triplet"/libstdc++.so.6*) usr/share/zoneinfo
    etc/os-release usr/lib/os-release etc/debian_version
  )
  local p
  for p in "${packages[@]}"; do keep+=("usr/share/doc/$p/copyright"); done
  for p in "${keep[@]}"; do
    [[ -e $debian/$p || -L $debian/$p ]] || die "Debian's $suite no longer has /$p; update make_rootfs"
  done
  mkdir -p "$root"
  (cd "$debian" && cp -a --parents "${keep[@]}" "$root/")

  # update-ca-certificates' result: every certificate Debian ships (all enabled by default), in order.
  mkdir -p "$root/etc/ssl/certs"
  find "$debian/usr/share/ca-certificates" -name '*.crt' -print0 | sort -z |
    xargs -0 cat >"$root/etc/ssl/certs/ca-certificates.crt"
  [[ -s $root/etc/ssl/certs/ca-certificates.crt ]] || die "no CA certificates in Debian's ca-certificates"

  # One control stanza per package, as distroless writes them, so scanners know what is inside.
  mkdir -p "$root/var/lib/dpkg/status.d"
  local deb name
  for p in "${packages[@]}"; do
    deb="$(find "$debian/var/cache/apt/archives" -maxdepth 1 -name "${p}_*.deb" | head -n 1)"
    [[ -n $deb ]] || die "mmdebstrap did not download $p"
    name="$(dpkg-deb --field "$deb" Package)"
    { dpkg-deb --field "$deb"; echo "Status: install ok installed"; } >"$root/var/lib/dpkg/status.d/$name"
  done

  # distroless's users and groups; nonroot (65532) is the one pullmap runs as.
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$root/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' >"$root/etc/group"
  printf '%s\n' 'hosts: files dns' >"$root/etc/nsswitch.conf"
  mkdir -p "$root/root" "$root/home/nonroot" "$root/tmp"
  chmod 0700 "$root/root" "$root/home/nonroot"
  chmod 1777 "$root/tmp"
  chown 65532:65532 "$root/home/nonroot"
}

start=$SECONDS
recipe="$(printf '%s\n' "$suite" "$mirror" "$arch" "${packages[*]}" "$(mmdebstrap --version)" \
  "$(declare -f make_rootfs layer_tar)" | sha256sum | cut -c1-16)"
rootfs_tar="$cache/debian-$suite-$arch-$recipe.tar"
if $refresh || [[ ! -s $rootfs_tar ]]; then
  log "building the Debian layer ($suite, ${packages[*]})"
  make_rootfs "$work/rootfs"
  mkdir -p "$cache"
  layer_tar "$work/rootfs" "$work/rootfs.tar" 0
  (cd "$work/rootfs/var/lib/dpkg/status.d" &&
    for f in *; do printf '%s %s\n' "$f" "$(sed -n 's/^Version: //p' "$f")"; done) >"$work/rootfs.packages"
  mv "$work/rootfs.packages" "${rootfs_tar%.tar}.packages"
  mv "$work/rootfs.tar" "$rootfs_tar"
  rm -rf "$work/rootfs" "$work/debian"
else
  log "reusing the Debian layer built $(date -u -r "$rootfs_tar" +%F) ($rootfs_tar; --refresh-rootfs for Debian's updates)"
fi
log "Debian packages: $(tr '\n' ' ' <"${rootfs_tar%.tar}.packages")"
debian_seconds=$((SECONDS - start))

# Node, as npm installed it, with its licence.
mkdir -p "$work/node/nodejs/bin"
cp "$node_bin" "$work/node/nodejs/bin/node"
chmod 0755 "$work/node/nodejs/bin/node"
[[ -f $node_pkg/LICENSE ]] && install -m 0644 "$node_pkg/LICENSE" "$work/node/nodejs/LICENSE"
layer_tar "$work/node" "$work/node.tar" 0

# The bundle, built fresh so no chunk of an earlier build in dist/ comes along.
"$node_bin" scripts/build.ts "$work/app/app/dist" >&2 || die "the bundle did not build (node scripts/build.ts)"
chmod -R u=rwX,go=rX "$work/app"
chmod 0755 "$work/app/app/dist/pullmap.js"
layer_tar "$work/app" "$work/app.tar" "$SOURCE_DATE_EPOCH"

bundle_seconds=$((SECONDS - start - debian_seconds))

# Assemble. Only the final config and manifest remain after gc.
layout="$work/layout"
tag="$version"
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
add_layer() {
  umoci raw add-layer --image "$layout:$tag" --history.created "$created" --history.created_by "$2" "$1"
}
add_layer "$rootfs_tar" "build-image.sh: Debian $suite: ${packages[*]}"
add_layer "$work/node.tar" "build-image.sh: Node $node_version from the npm package node"
add_layer "$work/app.tar" "build-image.sh: pullmap $version bundle (scripts/build.ts)"
umoci config --no-history --image "$layout:$tag" --created "$created" --os linux --architecture "$arch" \
  --config.user 65532:65532 --config.workingdir /app \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.entrypoint /nodejs/bin/node --config.entrypoint=--max-semi-space-size=2 \
  --config.entrypoint=--heap-growing-percent=50 --config.entrypoint=--no-concurrent-recompilation \
  --config.entrypoint=--liftoff-only --config.entrypoint /app/dist/pullmap.js --config.cmd=--help \
  --config.label org.opencontainers.image.title=pullmap \
  --config.label "org.opencontainers.image.version=$version" \
  --config.label "org.opencontainers.image.revision=$revision" \
  --config.label "org.opencontainers.image.created=$created" \
  --config.label org.opencontainers.image.licenses=Apache-2.0
umoci gc --layout "$layout"

tmp_out="$output.tmp.$$"
tar --create --file "$tmp_out" --directory "$layout" --sort=name --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" --mode=u=rwX,go=rX \
  oci-layout index.json blobs
mv "$tmp_out" "$output"

manifest="$(sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' "$layout/index.json")"
size_mb="$(du -sm "$layout/blobs" | cut -f1)"
log "built pullmap:$version ($arch, Node $node_version) in $((SECONDS - start)) s (Debian layer ${debian_seconds} s, Node and bundle ${bundle_seconds} s, compressing and assembling $((SECONDS - start - debian_seconds - bundle_seconds)) s): manifest $manifest, ${size_mb} MB compressed"

if [[ -n $push ]]; then
  tls=()
  case "${push%%/*}" in
    127.* | localhost | localhost:* | '[::1]'*) tls=(--dest-tls-verify=false) ;;
  esac
  skopeo copy --quiet --preserve-digests "${tls[@]}" "oci-archive:$output:$tag" "docker://$push" >&2 ||
    die "skopeo could not push to $push"
  log "pushed $push@$manifest"
fi
echo "$output"
