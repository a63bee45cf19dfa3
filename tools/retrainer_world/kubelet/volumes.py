"""Pod volumes as local folders, filled the way the kubelet fills them.

persistentVolumeClaim -> the bound PV's hostPath folder; emptyDir -> a per-pod folder;
hostPath -> as is; secret / configMap / downwardAPI / projected (including the bound
service-account token) -> files written into a per-pod folder. A source that is not there
yet raises `VolumeError`; the runner keeps the pod in ContainerCreating and retries, as the
kubelet does on FailedMount.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from retrainer_world.kubelet.env import (
    ConfigError,
    Lookup,
    field_value,
    resource_value,
    source_data,
)
from retrainer_world.kubelet.quantities import memory_bytes

__all__ = [
    "VolumeError",
    "VolumeSource",
    "disk_usage",
    "empty_dir_overuse",
    "prepare_volumes",
    "service_account_files",
    "write_files",
]

Obj = dict[str, Any]
DEFAULT_MODE = 0o644
TOKEN_SECONDS = 3607  # what the kubelet asks for; the apiserver may extend it


class VolumeError(Exception):
    """A volume cannot be set up yet (claim unbound, secret missing, unsupported kind)."""


class VolumeSource(Lookup, Protocol):
    """Everything volumes read from the cluster."""

    def claim_path(self, namespace: str, claim: str) -> Path | None: ...

    def token(self, namespace: str, sa: str, pod: Obj, audiences: list[str], seconds: int) -> str:
        """A bound service-account token for `pod`."""
        ...


def write_files(folder: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """Write `relative path -> (content, mode)`; paths may not leave `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for rel, (content, mode) in files.items():
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts or not rel:
            raise VolumeError(f"volume item path {rel!r} must be relative, without '..'")
        target = folder.joinpath(*pure.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        os.chmod(target, mode)


def _keyed(
    kind: str, ref: Obj, namespace: str, source: VolumeSource, default_mode: int
) -> dict[str, tuple[bytes, int]]:
    """Files of a secret/configMap source: all keys, or only `items` (key -> path)."""
    name = ref.get("secretName") or ref.get("name") or ""
    data = source_data(source, kind, namespace, name)
    if data is None:
        if ref.get("optional"):
            return {}
        raise VolumeError(f'{kind} "{name}" not found in namespace {namespace}')
    items = ref.get("items")
    if not items:
        return {key: (value, default_mode) for key, value in data.items()}
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        if item["key"] not in data:
            if ref.get("optional"):
                continue
            raise VolumeError(f'{kind} "{namespace}/{name}" has no key {item["key"]!r}')
        files[item["path"]] = (data[item["key"]], item.get("mode", default_mode))
    return files


def _downward(
    items: list[Obj], pod: Obj, node_name: str, mode: int
) -> dict[str, tuple[bytes, int]]:
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        if "fieldRef" in item:
            try:
                value = field_value(pod, item["fieldRef"].get("fieldPath", ""), node_name)
            except ConfigError as exc:
                raise VolumeError(str(exc)) from exc
        else:
            value = resource_value({}, (item.get("resourceFieldRef") or {}).get("resource", ""))
        files[item["path"]] = (value.encode(), item.get("mode", mode))
    return files


def _projected(
    spec: Obj, pod: Obj, source: VolumeSource, node_name: str
) -> dict[str, tuple[bytes, int]]:
    namespace = pod["metadata"]["namespace"]
    mode = spec.get("defaultMode", DEFAULT_MODE)
    files: dict[str, tuple[bytes, int]] = {}
    for part in spec.get("sources") or []:
        if "secret" in part:
            files.update(_keyed("secret", part["secret"], namespace, source, mode))
        elif "configMap" in part:
            files.update(_keyed("configmap", part["configMap"], namespace, source, mode))
        elif "downwardAPI" in part:
            files.update(_downward(part["downwardAPI"].get("items") or [], pod, node_name, mode))
        elif "serviceAccountToken" in part:
            sat = part["serviceAccountToken"]
            sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
            audiences = [sat["audience"]] if sat.get("audience") else []
            seconds = int(sat.get("expirationSeconds") or TOKEN_SECONDS)
            try:
                token = source.token(namespace, sa, pod, audiences, seconds)
            except Exception as exc:
                raise VolumeError(f"service account token for {namespace}/{sa}: {exc}") from exc
            # The projected volume's mode; container mode narrows it to 0600 for the pod's
            # user (security.apply_fs_group), as the kubelet does when one is known.
            files[sat["path"]] = (token.encode(), mode)
        else:
            raise VolumeError(f"projected source {sorted(part)} is not supported")
    return files


def _one(volume: Obj, pod: Obj, pod_dir: Path, source: VolumeSource, node_name: str) -> Path:
    name = volume["name"]
    namespace = pod["metadata"]["namespace"]
    folder = pod_dir / "volumes" / name
    if "persistentVolumeClaim" in volume:
        claim = volume["persistentVolumeClaim"]["claimName"]
        path = source.claim_path(namespace, claim)
        if path is None:
            raise VolumeError(f'persistentvolumeclaim "{claim}" is not bound to a volume yet')
        path.mkdir(parents=True, exist_ok=True)
        return path
    if "hostPath" in volume:
        spec = volume["hostPath"]
        path = Path(spec["path"])
        if spec.get("type") == "DirectoryOrCreate":
            path.mkdir(parents=True, exist_ok=True)
        elif spec.get("type") == "FileOrCreate":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
        return path
    if "emptyDir" in volume:
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    if "secret" in volume or "configMap" in volume:
        kind = "secret" if "secret" in volume else "configmap"
        spec = volume.get("secret") or volume.get("configMap") or {}
        files = _keyed(kind, spec, namespace, source, spec.get("defaultMode", DEFAULT_MODE))
    elif "downwardAPI" in volume:
        spec = volume["downwardAPI"]
        mode = spec.get("defaultMode", DEFAULT_MODE)
        files = _downward(spec.get("items") or [], pod, node_name, mode)
    elif "projected" in volume:
        files = _projected(volume["projected"], pod, source, node_name)
    else:
        kinds = sorted(set(volume) - {"name"})
        raise VolumeError(f"volume {name}: kind {kinds} is not supported by the pod runner")
    if folder.exists():
        shutil.rmtree(folder)
    write_files(folder, files)
    return folder


def prepare_volumes(
    pod: Obj, pod_dir: Path, source: VolumeSource, node_name: str
) -> dict[str, Path]:
    """Set up every volume of `pod`; returns volume name -> local folder."""
    return {
        volume["name"]: _one(volume, pod, pod_dir, source, node_name)
        for volume in (pod.get("spec") or {}).get("volumes") or []
    }


def disk_usage(folder: Path) -> int:
    """Bytes the folder's files take on disk (what the kubelet's du measures)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue  # removed while walking
    return total


def empty_dir_overuse(pod: Obj, folders: dict[str, Path]) -> str | None:
    """The kubelet's eviction message when an emptyDir holds more than its sizeLimit."""
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        limit = (volume.get("emptyDir") or {}).get("sizeLimit")
        folder = folders.get(volume["name"])
        if limit is None or folder is None:
            continue
        if disk_usage(folder) > memory_bytes(str(limit)):
            return f'Usage of EmptyDir volume "{volume["name"]}" exceeds the limit "{limit}". '
    return None


def service_account_files(pod: Obj, folders: dict[str, Path]) -> tuple[Path, Path | None] | None:
    """(token file, ca.crt or None) of the first projected volume with a token source."""
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        for part in (volume.get("projected") or {}).get("sources") or []:
            if "serviceAccountToken" in part and volume["name"] in folders:
                folder = folders[volume["name"]]
                ca = folder / "ca.crt"
                return folder / part["serviceAccountToken"]["path"], ca if ca.exists() else None
    return None
