"""Helpers for tests whose pods run as real containers from the images `make images` built.

A namespace labelled `retrainer.dev/pod-runtime=container` has its pods run by the pod runner
under podman + runc from the image each container names (never pulled: an image that was not
built fails with ErrImagePull). `container_namespace` adds that label and, by default, the
label that makes the apiserver enforce the restricted Pod Security Standard there. The image
names are the ones `make images` tagged: RETRAINER_IMAGE_REGISTRY / RETRAINER_IMAGE_TAG, which
the Makefile exports from REGISTRY / TAG, else the chart's defaults.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from kubernetes import client

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LABEL = "retrainer.dev/pod-runtime"
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"


def _app_version() -> str:
    text = (ROOT / "charts" / "retrainer" / "Chart.yaml").read_text()
    match = re.search(r'^appVersion: "(.+)"', text, re.MULTILINE)
    assert match, "charts/retrainer/Chart.yaml has no appVersion"
    return match.group(1)


REGISTRY = os.environ.get("RETRAINER_IMAGE_REGISTRY") or "ghcr.io/retrainer"
TAG = os.environ.get("RETRAINER_IMAGE_TAG") or _app_version()


def image(name: str) -> str:
    """`operator` or `trainer`, as `make images` tagged it."""
    return f"{REGISTRY}/{name}:{TAG}"


def image_values() -> list[str]:
    """helm arguments pointing the chart at the images `make images` built."""
    return [
        "--set", f"image.repository={REGISTRY}/operator",
        "--set", f"image.tag={TAG}",
        "--set", f"trainer.image.repository={REGISTRY}/trainer",
        "--set", f"trainer.image.tag={TAG}",
    ]  # fmt: skip


def require_images() -> None:
    """Fail at once, naming the fix, when `make images` has not built the images."""
    for name in ("operator", "trainer"):
        found = subprocess.run(
            ["podman", "image", "exists", image(name)],
            env={**os.environ, **container_engine_env()},
            capture_output=True,
            check=False,
            timeout=60,
        )
        assert found.returncode == 0, f"{image(name)} is not built: run `make images` first"


def container_namespace(kube: Any, namespace: str, restricted: bool = True) -> None:
    """Run `namespace`'s pods as containers, under the restricted Pod Security Standard."""
    require_images()
    labels = {RUNTIME_LABEL: "container"}
    if restricted:
        labels[ENFORCE_LABEL] = "restricted"
    client.CoreV1Api(kube).patch_namespace(namespace, {"metadata": {"labels": labels}})


def pod_log(world: Any, namespace: str, pod: str, container: str) -> str:
    """What a container wrote to stdout/stderr (the runner's per-container log file)."""
    path = Path(world.state) / "logs" / "pods" / f"{namespace}_{pod}_{container}.log"
    return path.read_text() if path.exists() else ""


def container_engine_env() -> dict[str, str]:
    """The variables podman needs to use the project's image store (tools/images/env.sh)."""
    script = ROOT / "tools" / "images" / "env.sh"
    out = subprocess.run(
        ["bash", "-c", f'source "{script}" && env -0'], capture_output=True, check=True, timeout=30
    ).stdout.decode()
    wanted = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "TMPDIR")
    pairs = (item.partition("=") for item in out.split("\0") if item)
    return {key: value for key, _, value in pairs if key in wanted}
