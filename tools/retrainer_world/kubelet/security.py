"""A pod's securityContext, applied the way the kubelet and the container runtime apply it.

Container mode only (a host process runs as the runner's user whatever the spec says). Three
parts: who the container runs as (runAsUser/runAsGroup/supplementalGroups/fsGroup, container
fields over pod fields), the kubelet's runAsNonRoot verification against the image's user
(before the container is created: CreateContainerConfigError), and the fsGroup ownership the
kubelet gives volumes that support it (group set to fsGroup, group read/write, setgid on
folders, so files created later inherit the group; OnRootMismatch skips a volume whose root
already matches). What the runtime enforces (read-only root filesystem, capabilities,
no-new-privileges) becomes podman arguments.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from retrainer_world.kubelet.env import ConfigError

__all__ = [
    "OWNED_KINDS",
    "apply_fs_group",
    "check_non_root",
    "engine_args",
    "fs_user",
    "merged",
]

Obj = dict[str, Any]
# Volume kinds whose ownership the kubelet manages with fsGroup. A claim's PV here is a local
# folder standing in for a CSI/local volume (fsGroupPolicy File); hostPath is never changed.
OWNED_KINDS = (
    "persistentVolumeClaim",
    "emptyDir",
    "secret",
    "configMap",
    "projected",
    "downwardAPI",
)
READ_ONLY_KINDS = ("secret", "configMap", "projected", "downwardAPI")
INHERITED = ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile", "seLinuxOptions")


def merged(pod: Obj, container: Obj) -> Obj:
    """The container's effective securityContext: its own fields over the pod's."""
    pod_ctx = (pod.get("spec") or {}).get("securityContext") or {}
    out = {key: pod_ctx[key] for key in INHERITED if key in pod_ctx}
    out.update(container.get("securityContext") or {})
    return out


def _image_uid(image_user: str) -> str:
    return image_user.partition(":")[0]


def check_non_root(pod: Obj, container: Obj, image_user: str) -> None:
    """The kubelet's runAsNonRoot verification; raises ConfigError as it would."""
    ctx = merged(pod, container)
    if not ctx.get("runAsNonRoot"):
        return
    if ctx.get("runAsUser") is not None:
        if int(ctx["runAsUser"]) == 0:
            raise ConfigError("container's runAsUser breaks non-root policy")
        return
    uid = _image_uid(image_user)
    if uid in ("", "root", "0"):
        raise ConfigError("container has runAsNonRoot and image will run as root")
    if not uid.isdigit():
        raise ConfigError(
            f"container has runAsNonRoot and image has non-numeric user ({uid}), "
            "cannot verify user is non-root"
        )


def _user_arg(ctx: Obj, image_user: str) -> list[str]:
    user, group = ctx.get("runAsUser"), ctx.get("runAsGroup")
    if user is None and group is None:
        return []
    uid = str(user) if user is not None else (_image_uid(image_user) or "0")
    return ["--user", uid if group is None else f"{uid}:{group}"]


def engine_args(pod: Obj, container: Obj, image_user: str) -> list[str]:
    """podman arguments for the identity and the runtime's share of the securityContext."""
    ctx = merged(pod, container)
    pod_ctx = (pod.get("spec") or {}).get("securityContext") or {}
    args = _user_arg(ctx, image_user)
    groups = [*(pod_ctx.get("supplementalGroups") or [])]
    if pod_ctx.get("fsGroup") is not None:
        groups.append(pod_ctx["fsGroup"])
    for group in dict.fromkeys(groups):
        args += ["--group-add", str(group)]
    if ctx.get("privileged"):
        args.append("--privileged")
    if ctx.get("readOnlyRootFilesystem"):
        # podman would otherwise mount writable tmpfs on /tmp, /run and /var/tmp.
        args += ["--read-only", "--read-only-tmpfs=false"]
    caps = ctx.get("capabilities") or {}
    for cap in caps.get("drop") or []:
        args.append("--cap-drop=all" if cap.upper() == "ALL" else f"--cap-drop={cap}")
    for cap in caps.get("add") or []:
        args.append(f"--cap-add={cap}")
    if ctx.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined":
        args += ["--security-opt", "seccomp=unconfined"]
    return args


def _owned(root: Path, gid: int, read_only: bool) -> None:
    """chgrp to `gid`, group read (and write unless read-only), setgid on folders."""
    for folder, _dirs, files in os.walk(root):
        for name in [folder, *(os.path.join(folder, f) for f in files)]:
            info = os.lstat(name)
            if stat.S_ISLNK(info.st_mode):
                continue
            os.chown(name, -1, gid)
            mode = stat.S_IMODE(info.st_mode) | stat.S_IRGRP
            if not read_only:
                mode |= stat.S_IWGRP
            if stat.S_ISDIR(info.st_mode):
                mode |= stat.S_IXGRP | stat.S_ISGID
            elif info.st_mode & stat.S_IXUSR:
                mode |= stat.S_IXGRP
            os.chmod(name, mode)


def fs_user(pod: Obj) -> int | None:
    """The kubelet's FsUser: the runAsUser every container of the pod shares, if any."""
    spec = pod.get("spec") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    users = {merged(pod, c).get("runAsUser") for c in containers}
    user = users.pop() if len(users) == 1 else None
    return int(user) if user is not None else None


def _narrow_tokens(pod: Obj, folders: dict[str, Path], user: int | None, group: int | None) -> None:
    """Service-account token files: 0600 and owned by FsUser when a user or group is known
    (the projected volume's defaultMode otherwise), so only the pod's user reads them."""
    if user is None and group is None:
        return
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        folder = folders.get(volume["name"])
        for part in (volume.get("projected") or {}).get("sources") or []:
            token = part.get("serviceAccountToken")
            if token is None or folder is None or not (folder / token["path"]).exists():
                continue
            path = folder / token["path"]
            path.chmod(0o600)
            if user is not None:
                os.chown(path, user, -1)


def apply_fs_group(pod: Obj, folders: dict[str, Path]) -> None:
    """Set up the volumes' ownership and modes the way the kubelet does before a start."""
    spec = pod.get("spec") or {}
    pod_ctx = spec.get("securityContext") or {}
    fs_group = pod_ctx.get("fsGroup")
    policy = pod_ctx.get("fsGroupChangePolicy") or "Always"
    _narrow_tokens(pod, folders, fs_user(pod), fs_group)
    for volume in spec.get("volumes") or []:
        kind = next((k for k in OWNED_KINDS if k in volume), None)
        folder = folders.get(volume["name"])
        if kind is None or folder is None or not folder.exists():
            continue
        if kind == "emptyDir":
            folder.chmod(folder.stat().st_mode | 0o777)  # the kubelet creates them 0777
        if fs_group is None:
            continue
        info = folder.stat()
        if policy == "OnRootMismatch" and info.st_gid == fs_group and info.st_mode & stat.S_ISGID:
            continue
        _owned(folder, int(fs_group), read_only=kind in READ_ONLY_KINDS)
