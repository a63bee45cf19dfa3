"""The container engine (podman + runc) as the pod runner's container mode calls it.

The engine's settings and image store are the ones `make images` builds into
(tools/images/env.sh says where), so a pod finds the images that were built, and every
container the runner starts carries a label naming the world's state folder, so the world
can remove what a crashed runner left behind. Nothing is ever pulled: an image that was not
built is `ErrImageNeverPull`, as on a node with imagePullPolicy Never.

The runner looks for the engine when it starts and again whenever a pod needs one and it has
none (`EngineFinder`): a world started before `make engine` installed podman must not run a
container namespace's pods as host processes, nor stay without containers for its whole life.
`RETRAINER_WORLD_FAULT_NO_ENGINE=1` in the runner's environment is the fault point that makes
it believe podman is absent (tests/integration/test_world_container_refusal.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ENGINE",
    "NO_ENGINE_FAULT",
    "RUNTIME_UNAVAILABLE",
    "WORLD_LABEL",
    "Engine",
    "EngineFinder",
    "ImageConfig",
    "container_name",
    "detect",
    "engine_env",
    "unavailable_message",
]

ENGINE = "podman"
# The fault point: set to 1 in the runner's environment, the runner finds no engine.
NO_ENGINE_FAULT = "RETRAINER_WORLD_FAULT_NO_ENGINE"
# The pod status reason of a container-mode pod refused for want of an engine.
RUNTIME_UNAVAILABLE = "ContainerRuntimeUnavailable"
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


def detect(state: Path) -> tuple[Engine | None, str]:
    """The engine, with what a previous runner left removed; else None and why not."""
    if os.environ.get(NO_ENGINE_FAULT, "") == "1":
        return None, f"{NO_ENGINE_FAULT}=1 is set (a fault injected on purpose)"
    if shutil.which(ENGINE) is None:
        return None, f"{ENGINE} is not on the pod runner's PATH"
    try:
        engine = Engine(state)
        removed = engine.remove_all()
    except Exception as exc:
        return None, f"{ENGINE} does not work here: {exc!r}"
    if removed:
        log.info("event=containers_removed count=%s", removed)
    return engine, ""


def unavailable_message(missing: str) -> str:
    """Why a container namespace's pod was refused, and the fix, for its status message."""
    return (
        f"this namespace runs pods as containers (retrainer.dev/pod-runtime=container) and "
        f"the pod runner has no container engine: {missing}. The pod was not run (never as a "
        f"host process). Install the engine with `make engine` and create the pod again (the "
        f"runner looks for {ENGINE} at every such pod), or restart the world (`make world-down`)"
    )


class EngineFinder:
    """The runner's engine, looked for again while it has none.

    Found once, it is kept: the runner then starts the `kubernetes` Service forwarder that
    containers need (`on_found`, which returns its address). Not found, each container pod asks
    again, so installing podman into a running world is enough; `missing` says why not.
    """

    def __init__(self, state: Path, on_found: Callable[[], str] | None = None) -> None:
        self.state = state
        self.on_found = on_found
        self.engine: Engine | None = None
        self.service_host = ""
        self.missing = "not looked for yet"
        self._lock = threading.Lock()

    def find(self) -> Engine | None:
        """The engine: the one found before, else a new look (logged either way it ends)."""
        with self._lock:
            if self.engine is not None:
                return self.engine
            engine, missing = detect(self.state)
            if engine is None:
                self.missing = missing
                log.warning("event=no_engine engine=%s reason=%r", ENGINE, missing)
                return None
            self.service_host = self.on_found() if self.on_found is not None else ""
            self.engine, self.missing = engine, ""
            log.info("event=engine_found engine=%s service=%s", ENGINE, self.service_host or "-")
            return engine
