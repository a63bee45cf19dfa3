# Sourced by tools/images/*.sh: where the project's container engine keeps its state.
# One image store under the retrainer cache, apart from the host's default store, so
# the tests' images and containers never mix with anyone else's.
# shellcheck shell=bash
images_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${RETRAINER_CACHE:-$HOME/.cache/retrainer}"
engine_root="$cache_root/containers"
mkdir -p "$engine_root/storage" "$engine_root/tmp"
export CONTAINERS_CONF="$images_here/containers.conf"
export CONTAINERS_STORAGE_CONF="$engine_root/storage.conf"
if [[ ! -f "$CONTAINERS_STORAGE_CONF" ]]; then
  cat >"$CONTAINERS_STORAGE_CONF" <<CONF
[storage]
driver = "overlay"
graphroot = "$engine_root/storage"
runroot = "/run/retrainer-containers"
CONF
fi
# buildah keeps RUN --mount=type=cache folders under \$TMPDIR/buildah-cache-<uid>/<id>.
export TMPDIR="$engine_root/tmp"
