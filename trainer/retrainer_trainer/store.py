"""Write version N to the claim: the quick-access copy, the production copy and its metadata.

Files are written beside their final name and renamed into place, so a reader (or a pod killed
half-way) never sees a truncated weight file. models/ is written last and only for a version
that trained and uploaded; `rollback` empties it again if verification then fails, so a failed
version leaves nothing in models/.

`digest` reads each file the trainer wrote once for all who record its sha256 (the upload, the
logged model, the metadata, the manifest); verification never uses it and reads every copy anew.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from retrainer_contract import documents, integrity, layout

from retrainer_trainer import logs
from retrainer_trainer.errors import VersionConflict

__all__ = [
    "artifact",
    "atomic_copy",
    "atomic_write_json",
    "claim_version",
    "digest",
    "rollback",
    "write_models",
    "write_quick_access",
]


def atomic_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.copyfile(src, tmp)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, dest)


def atomic_write_json(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# (path, device, inode, size, mtime, ctime) -> (sha256, size): what `digest` read already.
_digests: dict[tuple[str, int, int, int, int, int], tuple[str, int]] = {}


def digest(path: Path) -> tuple[str, int]:
    """sha256 and size of a file, read once while it stays the same file unchanged (the same
    inode, size, mtime and ctime: any write or replacement changes one of them)."""
    st = os.stat(path)
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    found = _digests.get(key)
    if found is None:
        found = _digests[key] = integrity.sha256_file(path)
    return found


def artifact(name: str, uri: str, path: Path) -> integrity.Artifact:
    """A status.artifacts entry for a local file: its sha256 and size as written."""
    sha256, size = digest(path)
    return integrity.Artifact(name=name, uri=uri, sha256=sha256, size=size)


def write_quick_access(paths: layout.VersionPaths) -> None:
    """runs/train/retrained_vN.pt: best.pt under its version name, beside the run folder."""
    atomic_copy(paths.training_run, paths.quick_access)
    logs.event("store", location=layout.QUICK_ACCESS, path=str(paths.quick_access))


def write_models(paths: layout.VersionPaths, metadata: dict[str, Any]) -> None:
    """models/retrained_vN_metadata.json, then models/retrained_vN.pt (the production copy)."""
    atomic_write_json(paths.metadata, metadata)
    atomic_copy(paths.training_run, paths.production)
    logs.event("store", location=layout.PRODUCTION, path=str(paths.production))


def rollback(paths: layout.VersionPaths) -> None:
    """Remove version N from models/ (it failed verification; nothing half-made stays there)."""
    for path in (paths.production, paths.metadata):
        path.unlink(missing_ok=True)
    logs.event("store.rollback", version=paths.version)


def _recorded_owner(paths: layout.VersionPaths) -> str:
    """The owner uid version N's folder already names: its ownership record, else (a version
    written before ownership records) its metadata file; "" when nothing names one."""
    for path in (paths.owner, paths.metadata):
        try:
            uid = documents.owner_uid(documents.read_json(path))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as error:
            raise VersionConflict(
                f"version {paths.version}: cannot read who owns it ({path}: {error}); "
                "refusing to write over it"
            ) from error
        if uid:
            return uid
    return ""


def claim_version(paths: layout.VersionPaths, owner: dict[str, str]) -> None:
    """Make `owner` the one owner of version N on the claim, or raise VersionConflict.

    The record is created exclusively (O_EXCL), so of two pods that race for the same number
    exactly one wins; a rerun of the owner's own pod finds its record and goes on.
    """
    recorded = _recorded_owner(paths)
    if not recorded:
        paths.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            with paths.owner.open("x", encoding="utf-8") as handle:
                # The same `retrainJob` field as the metadata file and the manifest.
                json.dump({"retrainJob": owner}, handle, indent=2)
                handle.write("\n")
            logs.event("owner.recorded", version=paths.version, uid=owner["uid"])
            return
        except FileExistsError:
            recorded = _recorded_owner(paths)
    if recorded != owner["uid"]:
        raise VersionConflict(
            f"version {paths.version} of model line {paths.model!r} belongs to RetrainJob uid "
            f"{recorded} ({paths.run_dir}), not to {owner['name']} (uid {owner['uid']}); "
            "it is never adopted or overwritten: the version sequence was lost or two "
            "operators allocated the same number"
        )
