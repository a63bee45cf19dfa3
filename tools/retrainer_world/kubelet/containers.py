"""Container mode: a pod's container as a `podman run` of the image its spec names.

Where launch.py turns a container into a host process (paths rewritten into the volumes'
folders, the image looked up in images.yaml), this module turns it into one podman command
that runs the real image under runc: command/args as entrypoint/args (Kubernetes semantics),
env and envFrom passed by name from podman's own environment (never on the command line),
every volumeMount and the termination message file bind-mounted where the spec says, the
securityContext and the memory/CPU limits applied by the runtime. Host networking: the pod
reaches the apiserver, MinIO and MLflow at the addresses the world gives, and in-cluster
clients find the apiserver through KUBERNETES_SERVICE_HOST/PORT as on a real node.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from retrainer_world.kubelet import security
from retrainer_world.kubelet.engine import ENGINE, WORLD_LABEL, Engine, container_name
from retrainer_world.kubelet.env import build_env, expand
from retrainer_world.kubelet.images import ImageUnknown
from retrainer_world.kubelet.launch import (
    Launch,
    LaunchContext,
    log_path,
    mount_sources,
    pod_dir,
)
from retrainer_world.kubelet.paths import DEFAULT_TERMINATION_PATH
from retrainer_world.kubelet.quantities import cpus, memory_bytes
from retrainer_world.kubelet.service import SERVICE_NAMES, SERVICE_PORT

__all__ = ["build_container_launch", "service_env"]

Obj = dict[str, Any]


def service_env(server: str, service_host: str = "") -> dict[str, str]:
    """The variables the kubelet gives every container for the `kubernetes` Service: the
    forwarded Service address when there is one, else the apiserver's own."""
    parts = urlsplit(server)
    host, port = parts.hostname or "127.0.0.1", str(parts.port or SERVICE_PORT)
    if service_host:
        host, port = service_host, str(SERVICE_PORT)
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": f"tcp://{host}:{port}",
    }


def _mounts(container: Obj, folders: dict[str, Path], env: dict[str, str]) -> list[str]:
    args: list[str] = []
    for mount, local in mount_sources(container, folders, env):
        mode = "ro" if mount.get("readOnly") else "rw"
        args += ["--volume", f"{local}:{mount['mountPath']}:{mode}"]
    return args


def _resources(container: Obj) -> list[str]:
    limits = (container.get("resources") or {}).get("limits") or {}
    args: list[str] = []
    if "memory" in limits:
        limit = str(memory_bytes(limits["memory"]))
        args += ["--memory", limit, "--memory-swap", limit]
    if "cpu" in limits:
        args += ["--cpus", cpus(limits["cpu"])]
    return args


def _env_args(env: dict[str, str], reserved: dict[str, str]) -> list[str]:
    """`--env NAME` (value from podman's environment), literal only for podman's own names."""
    args: list[str] = []
    for key, value in env.items():
        args += ["--env", f"{key}={value}" if key in reserved else key]
    return args


def build_container_launch(
    ctx: LaunchContext, engine: Engine, pod: Obj, container: Obj, folders: dict[str, Path]
) -> Launch:
    """The podman command for `container`; raises ConfigError, ImageUnknown, ValueError."""
    meta, name = pod["metadata"], container["name"]
    root = pod_dir(ctx, meta["uid"])
    root.mkdir(parents=True, exist_ok=True)
    image = container.get("image", "")
    config = engine.image(image)
    if config is None:
        raise ImageUnknown(
            f'Container image "{image}" is not present with pull policy of Never '
            "(build it with `make images`)"
        )
    security.check_non_root(pod, container, config.user)
    base = service_env(ctx.server, ctx.service_host)
    env = build_env(container, pod, ctx.source, ctx.node, base)
    message_file = root / f"{name}.termination-log"
    message_file.write_bytes(b"")
    message_file.chmod(0o666)  # the kubelet's mode: any container user may write it
    attempt = sum(1 for _ in root.glob(f"{name}.attempt-*"))
    (root / f"{name}.attempt-{attempt}").touch()
    cname = container_name(meta["uid"], name, attempt)
    argv = [
        ENGINE, "run", "--rm", "--name", cname,
        "--label", f"{WORLD_LABEL}={engine.label}",
        "--label", f"dev.retrainer.pod={meta['namespace']}/{meta['name']}",
        "--network", "host", "--pull", "never",
    ]  # fmt: skip
    if ctx.service_host:
        for host in SERVICE_NAMES:
            argv += ["--add-host", f"{host}:{ctx.service_host}"]
    argv += security.engine_args(pod, container, config.user)
    argv += _resources(container)
    argv += _mounts(container, folders, env)
    path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
    argv += ["--volume", f"{message_file}:{path}:rw"]
    if container.get("workingDir"):
        argv += ["--workdir", container["workingDir"]]
    argv += _env_args(env, engine.env)
    command = container.get("command")
    args = [expand(a, env) for a in container.get("args") or []]
    if command:
        argv += ["--entrypoint", json.dumps([expand(c, env) for c in command])]
    argv += [image, *args]
    return Launch(
        argv=argv,
        env={**env, **engine.env},
        cwd=root,
        log_file=log_path(ctx.state, meta["namespace"], meta["name"], name),
        message_file=message_file,
        engine_name=cname,
    )
