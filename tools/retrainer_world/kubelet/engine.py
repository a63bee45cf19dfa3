"""The container engine (podman + runc) as the pod runner's container mode calls it.

The engine's settings and image store are the ones `make images` builds into
(tools/images/env.sh says where), so a pod finds the images that were built, and every
container the runner starts carries a label naming the world's state folder, so the world
can remove what a crashed runner left behind. Nothing is ever pulled: an image that was not
built is `ErrImageNeverPull`, as on a node with imagePullPolicy Never.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ENGINE",
    "WORLD_LABEL",
    "Engine",
    "ImageConfig",
    "container_name",
    "engine_env",
]

ENGINE = "podman"
WORLD_LABEL = "dev.retrainer.world"
ENV_SCRIPT = Path(__file__).resolve().parents[3] / "tools" / "images" / "env.sh"
ENGINE_VARS = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "TMPDIR")
log = logging.getLogger("retrainer_world.kubelet")


def engine_env(script: Path = ENV_SCRIPT) -> dict[str, str]:
    """The engine's variables, from the one script that sets them for `make images` too."""
    out = subprocess.run(
        ["bash", "-c", f'source "{script}" && env -0'],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()
    pairs = (item.partition("=") for item in out.split("\0") if item)
    return {key: value for key, _, value in pairs if key in ENGINE_VARS}


def container_name(pod_uid: str, container: str, attempt: int) -> str:
    """A name unique per pod, container and start (a restarted container is a new one)."""
    return f"rt-{pod_uid[:13]}-{container}-{attempt}"


def world_label(state: Path) -> str:
    """The label value that marks containers of the world kept in `state`."""
    return hashlib.sha256(str(state).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ImageConfig:
    """What the runner needs from an image's config: its user (for runAsNonRoot)."""

    user: str


class Engine:
    """podman calls; `env` is the environment podman itself runs with."""

    def __init__(self, state: Path, env: dict[str, str] | None = None) -> None:
        base = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")}
        self.env = base | (engine_env() if env is None else env)
        self.label = world_label(state)
        self._images: dict[str, ImageConfig | None] = {}
        self._lock = threading.Lock()

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ENGINE, *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    def image(self, image: str) -> ImageConfig | None:
        """The image's config, None when the image is not in the store (never pulled)."""
        with self._lock:
            if image in self._images:
                return self._images[image]
        result = self.run("image", "inspect", "--format", "{{.Config.User}}", image)
        config = ImageConfig(result.stdout.strip()) if result.returncode == 0 else None
        with self._lock:
            if config is not None:
                self._images[image] = config
        return config

    def kill(self, name: str, signal: str) -> None:
        result = self.run("kill", "--signal", signal, name, timeout=30)
        if result.returncode != 0 and "no such container" not in result.stderr.lower():
            log.warning("event=engine_kill_failed container=%s error=%s", name, result.stderr)

    def remove_all(self) -> int:
        """Force-remove every container of this world; returns how many there were."""
        listed = self.run("ps", "-aq", "--filter", f"label={WORLD_LABEL}={self.label}")
        ids = listed.stdout.split()
        if ids:
            self.run("rm", "--force", "--time", "2", *ids, timeout=120)
        return len(ids)
