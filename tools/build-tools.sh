#!/usr/bin/env bash
# Builds the binaries the local world runs (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, helm, minio) from Go
# modules, at the versions pinned in tools/versions.env, into a cache outside
# the repository. A second run with the same versions does nothing.
#
# RETRAINER_BIN_DIR points at a folder holding already-built binaries instead.
#   tools/build-tools.sh              build what is missing, print the folder
#   tools/build-tools.sh --print-dir  print the folder, build nothing
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

if [[ -n "${RETRAINER_BIN_DIR:-}" ]]; then
  echo "$RETRAINER_BIN_DIR"
  exit 0
fi

cache_root="${RETRAINER_CACHE:-$HOME/.cache/retrainer}"
key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_helm-${HELM_VERSION}_minio-${MINIO_VERSION##*-}"
bin="$cache_root/bin/$key"
if [[ "${1:-}" == "--print-dir" ]]; then
  # Where the binaries are (or will be), without building anything.
  echo "$bin"
  exit 0
fi
want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm minio)

have_all() {
  for b in "${want[@]}"; do [[ -x "$bin/$b" ]] || return 1; done
}
if have_all; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "build-tools: the Go toolchain (go) is not on PATH; install Go 1.26+ first" >&2; exit 2; }
if ! go list -m -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" >/dev/null 2>&1; then
  echo "build-tools: cannot reach the Go module proxy ($(go env GOPROXY)) to fetch k8s.io/kubernetes@${KUBERNETES_VERSION}" >&2
  exit 2
fi

mkdir -p "$bin"
work="$cache_root/build/$key"
mkdir -p "$work"
export GOFLAGS=-mod=mod CGO_ENABLED=0

step() { echo "build-tools: [$(date +%H:%M:%S)] $*" >&2; }

# Kubernetes + etcd share one module: k8s.io/kubernetes with every staging
# module replaced by its matching published v0.x release (the repo's own
# go.mod points them at ./staging, which a dependent module cannot use).
if [[ ! -x "$bin/kube-apiserver" || ! -x "$bin/kubectl" || ! -x "$bin/etcd" ]]; then
  kmod="$work/kube"
  mkdir -p "$kmod/etcd"
  step "resolving k8s.io/kubernetes@${KUBERNETES_VERSION}"
  gomod="$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  staging_minor="v0.${KUBERNETES_VERSION#v1.}"
  {
    echo "module retrainer.local/kubetools"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes ${KUBERNETES_VERSION}"
    echo "require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}"
    echo
    grep -E '^\s*k8s.io/[a-z0-9-]+ => ./staging' "$gomod" | awk -v v="$staging_minor" '{print "replace " $1 " => " $1 " " v}'
  } >"$kmod/go.mod"
  cat >"$kmod/etcd/main.go" <<'GO'
// etcd's own main, which the etcd root module cannot be `go install`ed for.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  cat >"$kmod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  (cd "$kmod" && step "go mod tidy (downloads Kubernetes' dependencies)" && go mod tidy)
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    if [[ ! -x "$bin/$cmd" ]]; then
      step "building $cmd ${KUBERNETES_VERSION} (several minutes on 2 cores)"
      (cd "$kmod" && go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${KUBERNETES_VERSION} -X k8s.io/client-go/pkg/version.gitVersion=${KUBERNETES_VERSION}" -o "$bin/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
      mv "$bin/$cmd.tmp" "$bin/$cmd"
    fi
  done
  if [[ ! -x "$bin/etcd" ]]; then
    step "building etcd ${ETCD_VERSION}"
    (cd "$kmod" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" ./etcd)
    mv "$bin/etcd.tmp" "$bin/etcd"
  fi
fi

if [[ ! -x "$bin/helm" ]]; then
  step "building helm ${HELM_VERSION}"
  GOBIN="$work/gobin" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
  mv "$work/gobin/helm" "$bin/helm"
fi

if [[ ! -x "$bin/minio" ]]; then
  step "building minio ${MINIO_VERSION}"
  GOBIN="$work/gobin" go install -trimpath -ldflags "-s -w" "github.com/minio/minio@${MINIO_VERSION}"
  mv "$work/gobin/minio" "$bin/minio"
fi

have_all || { echo "build-tools: some binaries are missing from $bin" >&2; exit 1; }
step "all tools ready in $bin"
echo "$bin"
