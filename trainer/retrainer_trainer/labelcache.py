"""Ultralytics' label caches (`labels/<split>.cache`): loaded only when Retrainer recorded them.

Ultralytics keeps each split's parsed labels in a `*.cache` file beside the label folder and
reads it back with `np.load(allow_pickle=True)`: unpickling runs whatever the pickle names, and
the working trees are on a claim that other pods write. A cache also *is* the labels training
uses, so a planted one could change what is trained without touching a label file.

So before Ultralytics reads a folder (training on a working tree, validating on the holdout
copy), every `*.cache` under its `labels/` is deleted unless its sha256 is the one recorded in
the folder's sidecar `.retrainer-label-caches.json` and its pickle names nothing beyond numpy's
array reconstruction (a forged sidecar still cannot run code). Ultralytics then rebuilds what
was deleted from the label files; once it has written its caches, they are recorded. The
sidecar lives in the folder it describes, so it moves with a tree and goes with it.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from retrainer_contract import integrity

from retrainer_trainer import logs, picklescan

__all__ = ["ALLOWED", "RECORD", "record", "safe", "scrub"]

RECORD = ".retrainer-label-caches.json"
# What np.save pickles for Ultralytics' cache dict (numpy 2 and numpy 1 module names).
ALLOWED = frozenset(
    {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


def _caches(root: Path) -> list[Path]:
    labels = root / "labels"
    return sorted(p for p in labels.rglob("*.cache") if p.is_file()) if labels.is_dir() else []


def _recorded(root: Path) -> dict[str, str]:
    try:
        data = json.loads((root / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _sha256(path: Path) -> str | None:
    """The cache's sha256; None when another trainer removed or replaced it meanwhile."""
    try:
        return integrity.sha256_file(path)[0]
    except OSError:
        return None


def safe(path: Path) -> bool:
    """Whether the .npy at `path` unpickles nothing but numpy arrays (read, never loaded)."""
    import numpy.lib.format as npy

    try:
        with path.open("rb") as handle:
            version = npy.read_magic(handle)
            header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            _, _, dtype = header(handle)
            if not dtype.hasobject:
                return True  # plain numbers: np.load unpickles nothing
            uses = picklescan.scan_pickle(handle.read(), path.name)
    except (ValueError, OSError, picklescan.NotACheckpoint):
        return False
    return all((use.module, use.name) in ALLOWED for use in uses)


def scrub(root: Path) -> list[str]:
    """Delete every label cache under `root` that Retrainer did not record or that would run
    code when unpickled; the caches deleted (relative paths). Run before Ultralytics reads."""
    recorded = _recorded(root)
    removed = []
    for path in _caches(root):
        rel = path.relative_to(root).as_posix()
        sha256 = _sha256(path)
        if sha256 is not None and recorded.get(rel) == sha256 and safe(path):
            continue
        path.unlink(missing_ok=True)
        removed.append(rel)
    if removed:
        logs.event("labelcache.removed", folder=str(root), caches=removed)
    return removed


def record(root: Path) -> None:
    """Record the sha256 of each label cache under `root` (the ones Ultralytics just wrote:
    scrub left no other), so the next run on this folder loads them instead of rebuilding."""
    caches = {}
    for path in _caches(root):
        sha256 = _sha256(path)
        if sha256 is not None and safe(path):
            caches[path.relative_to(root).as_posix()] = sha256
    if caches == _recorded(root):
        return
    tmp = root / f".{RECORD}.{secrets.token_hex(4)}"
    tmp.write_text(json.dumps(caches, sort_keys=True), encoding="utf-8")
    os.replace(tmp, root / RECORD)
    logs.event("labelcache.recorded", folder=str(root), caches=sorted(caches))
