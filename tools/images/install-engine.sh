#!/usr/bin/env bash
# Installs the container engine the test world runs pods with and `make images` builds with
# when there is no docker daemon: podman, buildah, runc (crun refuses cgroup v1 hosts) and
# mmdebstrap for the local base image. Debian packages; does nothing when all are there.
set -euo pipefail
need=()
for cmd in podman:podman buildah:buildah runc:runc mmdebstrap:mmdebstrap newuidmap:uidmap; do
  command -v "${cmd%%:*}" >/dev/null || need+=("${cmd##*:}")
done
[[ ${#need[@]} -eq 0 ]] && exit 0
command -v apt-get >/dev/null || { echo "images: install ${need[*]} (no apt-get here)" >&2; exit 2; }
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "images: installing ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
