#!/usr/bin/env bash
# kube-apiserver for the tests, built from Go modules and cached: see scripts/kube-binary.sh.
#   usage: scripts/kube-apiserver.sh [--cached-only]
exec bash "$(dirname "$0")/kube-binary.sh" kube-apiserver "$@"
