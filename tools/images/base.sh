#!/usr/bin/env bash
# Builds the local stand-ins for the public base images the Dockerfiles name, when
# those cannot be pulled: a Debian bookworm root made by mmdebstrap with Python 3.11
# (for python:3.11-slim and, through TRAINER_PYTHON, nvidia/cuda + uv's Python), and
# an image holding only the host's uv binary (for ghcr.io/astral-sh/uv).
#   tools/images/base.sh python   print the python base's name, building it if missing
#   tools/images/base.sh uv       print the uv image's name, building it if missing
# The names carry a content key, so a changed recipe gives a new image.
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"

say() { echo "images: [$(date +%H:%M:%S)] $*" >&2; }
have() { podman image exists "$1"; }

python_base() {
  local packages="python3 python3-pip python3-venv ca-certificates passwd"
  # The host's extra CA certificates (an egress proxy's, say) go in, so pip and apt
  # inside a build trust what the host trusts.
  local cas=(/usr/local/share/ca-certificates/*.crt)
  local key
  # The key is this recipe (this function's own text), the packages and the CAs.
  key="$( { echo "$packages"; declare -f python_base; cat "${cas[@]}" 2>/dev/null || true; } \
    | sha256sum | cut -c1-12)"
  local name="localhost/retrainer/python-base:3.11-bookworm-$key"
  if have "$name"; then echo "$name"; return; fi
  command -v mmdebstrap >/dev/null || { echo "images: mmdebstrap is missing (apt-get install mmdebstrap)" >&2; exit 2; }
  say "building $name with mmdebstrap"
  local tar="$engine_root/tmp/python-base-$key.tar"
  local hooks="$engine_root/tmp/python-base-$key.hooks"
  mkdir -p "$hooks"
  cp "${cas[@]}" "$hooks/" 2>/dev/null || true
  # shellcheck disable=SC2016
  mmdebstrap --quiet --variant=minbase --include="${packages// /,}" \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --customize-hook="cp $hooks/. \"\$1/usr/local/share/ca-certificates/\" -r" \
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
    --customize-hook='rm -f "$1"/usr/lib/python3.11/EXTERNALLY-MANAGED' \
    --customize-hook='ln -sf python3 "$1"/usr/bin/python' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$tar" http://deb.debian.org/debian
  podman import --quiet --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' "$tar" "$name" >/dev/null
  rm -rf "$tar" "$hooks"
  # Older bases go once nothing built on them is left (best effort).
  podman images --format '{{.Repository}}:{{.Tag}}' localhost/retrainer/python-base \
    | grep -vx "$name" | xargs -r podman rmi >/dev/null 2>&1 || true
  echo "$name"
}

uv_image() {
  local uv_bin
  # The real binary, not a shim (pyenv's, say): the one the uv package itself names, else
  # the uv on PATH when it is an executable file rather than a script.
  uv_bin="$(python3 -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null || true)"
  if [[ -z "$uv_bin" ]]; then
    uv_bin="$(readlink -f "$(command -v uv)" 2>/dev/null || true)"
    [[ -n "$uv_bin" && "$(head -c 4 "$uv_bin" | tail -c 3)" == "ELF" ]] || uv_bin=""
  fi
  [[ -n "$uv_bin" ]] || { echo "images: uv is missing (python3 -m pip install uv)" >&2; exit 2; }
  local version
  version="$("$uv_bin" --version | awk '{print $2}')"
  local name="localhost/retrainer/uv:$version"
  if have "$name"; then echo "$name"; return; fi
  say "building $name from $uv_bin"
  local ctx="$engine_root/tmp/uv-$version"
  mkdir -p "$ctx"
  cp "$uv_bin" "$ctx/uv"
  printf 'FROM scratch\nCOPY uv /uv\n' >"$ctx/Containerfile"
  buildah bud --quiet --layers -f "$ctx/Containerfile" -t "$name" "$ctx" >/dev/null
  rm -rf "$ctx"
  echo "$name"
}

case "${1:-}" in
  python) python_base ;;
  uv) uv_image ;;
  *) echo "usage: $0 python|uv" >&2; exit 2 ;;
esac
