#!/usr/bin/env bash
# `make images`: builds the operator, trainer and mlflow images from their Dockerfiles
# (<name>/Dockerfile), tags them <registry>/<name>:<tag> and, with PUSH=1, pushes them. The
# mlflow image is the chart's bundled MLflow server (mlflow.enabled): MLflow with boto3.
#
# With a docker daemon, docker builds them from the public bases. Without one, buildah
# builds the same Dockerfiles, the bases coming in through build arguments: a Debian
# bookworm root with Python 3.11 made by mmdebstrap stands in for python:3.11-slim (operator,
# mlflow) and for nvidia/cuda (whose CUDA runtime the trainer only needs on a GPU node: torch's
# CUDA libraries come from the locked wheels), an image of the host's uv for
# ghcr.io/astral-sh/uv.
#
# An image is built once per content key (tools/images/contentkey.py: the Dockerfile, what it
# copies, the build arguments): a warm run only checks that the keyed image exists.
#   REGISTRY=ghcr.io/retrainer TAG=0.1.0 PUSH= IMAGES="operator trainer mlflow" tools/images/build.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
registry="${REGISTRY:-ghcr.io/retrainer}"
tag="${TAG:?TAG is required (make images sets it from the chart appVersion)}"
images="${IMAGES:-operator trainer mlflow}"

say() { echo "images: [$(date +%H:%M:%S)] $*" >&2; }

if docker info >/dev/null 2>&1; then
  for name in $images; do
    key="$(python3 tools/images/contentkey.py "$name/Dockerfile")"
    target="$registry/$name:$tag"
    have="$(docker image inspect --format '{{ index .Config.Labels "dev.retrainer.content-key" }}' "$target" 2>/dev/null || true)"
    if [[ "$have" != "$key" ]]; then
      say "docker build $target (key $key)"
      DOCKER_BUILDKIT=1 docker build -f "$name/Dockerfile" --label "dev.retrainer.content-key=$key" -t "$target" .
    fi
    [[ -z "${PUSH:-}" ]] || docker push "$target"
    # The test world runs pods with podman, from its own store: hand the image over once.
    # (Untested here: no docker daemon on the machines this was written on.)
    if command -v podman >/dev/null; then
      (
        # shellcheck source=env.sh
        source tools/images/env.sh
        want="$(podman image inspect --format '{{ index .Labels "dev.retrainer.content-key" }}' "$target" 2>/dev/null || true)"
        [[ "$want" == "$key" ]] || docker save "$target" | podman load >/dev/null
      )
    fi
  done
  exit 0
fi

# No docker daemon: buildah + podman, with the project's engine settings and image store.
tools/images/install-engine.sh
# shellcheck source=env.sh
source tools/images/env.sh
python_base="$(tools/images/base.sh python)"
uv_image="$(tools/images/base.sh uv)"
# The trainer's wheel cache mount (id retrainer-uv) lives under $TMPDIR/buildah-cache in the
# project's engine folder: the 3 GB of CUDA wheels are downloaded once per machine.

for name in $images; do
  case "$name" in
    operator|mlflow) args=(--build-arg "PYTHON_BASE=$python_base") ;;
    trainer) args=(--build-arg "TRAINER_BASE=$python_base" --build-arg "UV_IMAGE=$uv_image"
                   --build-arg "TRAINER_PYTHON=/usr/bin/python3.11"
                   --build-arg "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt") ;;
    *) echo "images: unknown image $name" >&2; exit 2 ;;
  esac
  key="$(python3 tools/images/contentkey.py "$name/Dockerfile" "${args[@]}")"
  keyed="localhost/retrainer/cache/$name:$key"
  target="$registry/$name:$tag"
  if podman image exists "$keyed"; then
    say "$target: cached ($keyed)"
  else
    say "building $target (key $key)"
    start=$SECONDS
    buildah bud --quiet --layers --network host --format docker \
      -f "$name/Dockerfile" --ignorefile "$name/Dockerfile.dockerignore" \
      --label "dev.retrainer.content-key=$key" "${args[@]}" -t "$keyed" . >/dev/null
    say "built $target in $((SECONDS - start))s"
    # Older keys of this image go; layers the new image shares stay.
    podman images --format '{{.Repository}}:{{.Tag}}' "localhost/retrainer/cache/$name" \
      | grep "^localhost/retrainer/cache/$name:" | grep -vx "$keyed" \
      | xargs -r podman rmi >/dev/null 2>&1 || true
  fi
  podman tag "$keyed" "$target"
  [[ -z "${PUSH:-}" ]] || podman push "$target"
done
