#!/usr/bin/env bash
# Builds (or reuses) the Kueue controller at KUEUE_VERSION (tools/versions.env) from its Go
# module, with its CRDs beside it, for the queueing test (tests/integration/test_kueue.py).
# Kept apart from build-tools.sh so a Kueue bump never rebuilds Kubernetes.
#   tools/build-kueue.sh              build what is missing, print the folder
#   tools/build-kueue.sh --print-dir  print the folder, build nothing
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
bin="${RETRAINER_CACHE:-$HOME/.cache/retrainer}/bin/kueue-${KUEUE_VERSION}"
if [[ "${1:-}" == "--print-dir" || ( -x "$bin/kueue" && -d "$bin/crds" ) ]]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "build-kueue: the Go toolchain (go) is not on PATH" >&2; exit 2; }
mkdir -p "$bin/crds"
echo "build-kueue: [$(date +%H:%M:%S)] building sigs.k8s.io/kueue@${KUEUE_VERSION}" >&2
GOBIN="$bin" CGO_ENABLED=0 GOFLAGS=-mod=mod go install "sigs.k8s.io/kueue/cmd/kueue@${KUEUE_VERSION}"
dir="$(go mod download -json "sigs.k8s.io/kueue@${KUEUE_VERSION}" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
cp "$dir"/config/components/crd/bases/*.yaml "$bin/crds/"
chmod -R u+w "$bin/crds"
echo "$bin"
