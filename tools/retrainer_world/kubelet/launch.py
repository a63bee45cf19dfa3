"""Everything a container process needs before it starts: argv, env, cwd, files.

Kept apart from the lifecycle so it stays a plain function of (pod, container, volume
folders): the env comes from the pod spec only (plus PATH and locale from the runner),
container paths are mapped to the local folders behind the volumes, the termination
message file and the log file get their per-pod places, and a pod that mounts a
service-account token gets a KUBECONFIG for that identity (in-cluster config would read
the fixed /var/run/secrets path, which is not where the token is here).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from retrainer_world.kubelet import volumes
from retrainer_world.kubelet.engine import Engine, EngineFinder
from retrainer_world.kubelet.env import build_env, expand
from retrainer_world.kubelet.images import (
    ImageEntry,
    container_argv,
    image_argv_count,
    resolve_executable,
)
from retrainer_world.kubelet.paths import DEFAULT_TERMINATION_PATH, PathMap

__all__ = [
    "RUNTIMES",
    "RUNTIME_LABEL",
    "Launch",
    "LaunchContext",
    "base_env",
    "build_launch",
    "container_paths",
    "log_path",
    "mount_sources",
    "pod_dir",
    "working_dir",
]

Obj = dict[str, Any]
RUNTIMES = ("process", "container")
RUNTIME_LABEL = "retrainer.dev/pod-runtime"
LOCALE_VARS = ("LANG", "LANGUAGE", "TZ")


@dataclass(frozen=True)
class LaunchContext:
    """What the runner knows that every launch needs."""

    source: volumes.VolumeSource
    state: Path
    node: str
    venv: Path
    repo: Path
    server: str = ""  # apiserver URL, for pods that carry a service-account token
    ca_file: str = ""
    base: dict[str, str] = field(default_factory=dict)
    images: dict[str, ImageEntry] = field(default_factory=dict)
    # "process" (host processes) or "container" (podman + runc, containers.py); a namespace
    # labelled RUNTIME_LABEL chooses for its own pods.
    runtime: str = "process"
    engine: Engine | None = None
    service_host: str = ""  # container mode: where kubernetes.default.svc:443 answers
    # Where a container pod looks for an engine the runner did not have when it started.
    engines: EngineFinder | None = None


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_file: Path
    message_file: Path
    engine_name: str = ""  # container mode: the container's name, for signals


def pod_dir(ctx: LaunchContext, uid: str) -> Path:
    return ctx.state / "pods" / uid


def log_path(state: Path, namespace: str, pod: str, container: str) -> Path:
    return state / "logs" / "pods" / f"{namespace}_{pod}_{container}.log"


def base_env(venv: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The only things inherited from the runner: PATH (venv bin first) and locale."""
    path = environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}{path}"}
    for key, value in environ.items():
        if key in LOCALE_VARS or key.startswith("LC_"):
            env[key] = value
    return env


def mount_sources(
    container: Obj, folders: dict[str, Path], env: dict[str, str]
) -> list[tuple[Obj, Path]]:
    """Each volumeMount with the local folder it shows (its volume's, + subPath), for both
    runtimes: host processes rewrite paths into it, containers bind-mount it."""
    found: list[tuple[Obj, Path]] = []
    for mount in container.get("volumeMounts") or []:
        name = mount["name"]
        if name not in folders:
            raise ValueError(f"volumeMount {name!r} names no volume of the pod")
        local = folders[name]
        sub = mount.get("subPath") or expand(mount.get("subPathExpr") or "", env)
        if sub:
            if sub.startswith("/") or ".." in sub.split("/"):
                raise ValueError(f"volumeMount {name!r}: subPath {sub!r} must be relative")
            local = local / sub
            if not local.exists():
                local.mkdir(parents=True, exist_ok=True)  # the kubelet creates it too
        found.append((mount, local))
    return found


def container_paths(
    container: Obj, folders: dict[str, Path], message_file: Path, env: dict[str, str]
) -> PathMap:
    """mountPath (+subPath) -> local folder, and terminationMessagePath -> message file."""
    pathmap = PathMap()
    for mount, local in mount_sources(container, folders, env):
        pathmap.add(mount["mountPath"], local)
    path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
    pathmap.add(path, message_file)
    return pathmap


def working_dir(container: Obj, pathmap: PathMap, pod_root: Path) -> Path:
    """workingDir mapped into a volume, else as is when it exists here, else per pod."""
    wanted = container.get("workingDir")
    if not wanted:
        cwd = pod_root / "work"
    elif (mapped := pathmap.local(wanted)) is not None:
        cwd = Path(mapped)
    elif Path(wanted).is_dir():
        return Path(wanted)
    else:
        cwd = pod_root / "rootfs" / wanted.lstrip("/")
    cwd.mkdir(parents=True, exist_ok=True)
    return cwd


def _kubeconfig(ctx: LaunchContext, token_file: Path, ca: Path | None, out: Path) -> Path:
    cluster: Obj = {"server": ctx.server}
    if ca is not None or ctx.ca_file:
        cluster["certificate-authority"] = str(ca or ctx.ca_file)
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "in-cluster", "cluster": cluster}],
        "users": [{"name": "pod", "user": {"token": token_file.read_text().strip()}}],
        "contexts": [{"name": "pod", "context": {"cluster": "in-cluster", "user": "pod"}}],
        "current-context": "pod",
    }
    out.write_text(yaml.safe_dump(doc))
    out.chmod(0o600)
    return out


def build_launch(ctx: LaunchContext, pod: Obj, container: Obj, folders: dict[str, Path]) -> Launch:
    """argv/env/cwd for `container`; raises ConfigError, ImageUnknown, FileNotFoundError."""
    meta = pod["metadata"]
    root = pod_dir(ctx, meta["uid"])
    (root / "home").mkdir(parents=True, exist_ok=True)
    name = container["name"]
    message_file = root / f"{name}.termination-log"
    base = dict(ctx.base) or base_env(ctx.venv, os.environ)
    base.update({"HOME": str(root / "home"), "PYTHONUNBUFFERED": "1"})
    token = volumes.service_account_files(pod, folders)
    if token is not None and ctx.server and token[0].exists():
        base["KUBECONFIG"] = str(_kubeconfig(ctx, token[0], token[1], root / "kubeconfig"))
    raw_env = build_env(container, pod, ctx.source, ctx.node, base)
    pathmap = container_paths(container, folders, message_file, raw_env)
    # $(VAR) is expanded with the container's own view of paths, then mapped once; what the
    # image table supplied is a host path already and stays as it is.
    host_items = image_argv_count(container, ctx.images)
    argv = [
        arg if index < host_items else pathmap.rewrite(expand(arg, raw_env))
        for index, arg in enumerate(container_argv(container, ctx.images, ctx.venv, ctx.repo))
    ]
    env = {k: v if base.get(k) == v else pathmap.rewrite(v) for k, v in raw_env.items()}
    cwd = working_dir(container, pathmap, root)
    argv[0] = resolve_executable(argv[0], env.get("PATH", ""), cwd)
    return Launch(
        argv=argv,
        env=env,
        cwd=cwd,
        log_file=log_path(ctx.state, meta["namespace"], meta["name"], name),
        message_file=message_file,
    )
