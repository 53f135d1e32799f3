#!/usr/bin/env bash
# Installs, once and idempotently, everything the integration tests start: Debian packages and the Go
# builds cached under ~/.cache/pullmap (kube-apiserver, kubelet, controller-manager, scheduler, crictl, Helm,
# SeaweedFS). Cached runs take about a second, so `npm test` calls it every time (a fresh machine: ~25 min).
#   env: PULLMAP_SKIP_PREREQS=1 skips it (a developer who manages the machine by hand)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${PULLMAP_SKIP_PREREQS:-}" == 1 ]] && exit 0

# Real components the integration tests start (see ../shared/test-infra.md).
# The real node (test/harness/node.ts): runc and CNI plugins for containerd's CRI, iproute2 for its bridge,
# util-linux for flock/setpriv, gcc + libc6-dev for the static program inside the test images.
# nodejs: the distribution's older Node.js, which test/cli.test.ts runs the bundle under to check the version message.
# mmdebstrap, umoci and gpg build the container image in test/image/ (scripts/build-image.sh).
# prometheus gives promtool (the chart's alert rules); tinyproxy is the HTTP proxy of the egress tests.
# time (GNU time) measures the peak RSS of `pullmap copy` in bench/copy.ts and test/mirror/copy-memory.test.ts.
# nginx-light is the body-limited reverse proxy (an ingress's 413) in front of a copy's target registry.
packages=(docker-registry skopeo containerd etcd-server etcd-client apache2-utils jq openssl curl
  runc containernetworking-plugins iproute2 util-linux gcc libc6-dev nodejs mmdebstrap umoci gpg
  prometheus tinyproxy time nginx-light)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]] && ! command -v sudo >/dev/null; then
    echo "test-prereqs: missing Debian packages: ${missing[*]} (install them as root)" >&2
    exit 1
  fi
  sudo=(); [[ $(id -u) == 0 ]] || sudo=(sudo)
  echo "test-prereqs: installing ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The packages' own services are not what the tests use: they start their own on free ports.
  for s in tinyproxy prometheus docker-registry etcd containerd nginx; do
    command -v systemctl >/dev/null && "${sudo[@]}" systemctl disable --now "$s" >/dev/null 2>&1 || true
  done
fi

# Go builds, cached: a current kube-apiserver and kubelet of one release (shared module downloads),
# kube-controller-manager and kube-scheduler (the chart's pods on the real node), crictl (CRI tear-down),
# Helm v4 (chart tests) and SeaweedFS (the S3 tests and benchmark).
for c in kube-apiserver kubelet kube-controller-manager kube-scheduler; do
  bash scripts/kube-binary.sh "$c" >/dev/null
done
for t in crictl helm weed; do
  bash scripts/go-tool.sh "$t" >/dev/null
done
