"""The working dataset: hardlinks on the claim, built once per content, never a copy.

Ultralytics trains on `images/<split>` and finds each label by replacing the path's last
`/images/` with `/labels/`; the trainer also writes corrected labels. Both need a folder in
one fixed layout, but not fresh bytes: the working tree hardlinks the cached blobs (or the
files of a dataset folder on the claim) and writes only the corrected labels and data.yaml.

A tree is named by what it holds (the dataset's and the corrections' sha256), under the
cache's trees/, so the next version on the same data finds it ready: nothing validated, linked
or counted again, and Ultralytics' `labels/<split>.cache` (keyed on the files' paths, sizes and
mtimes, which a hardlink keeps) is reused as it stands. A tree is reused only when each of its
linked files is still the inode of its source (a corrupted blob fetched again is a new inode:
the tree is built again). A trainer holds the tree's lock (shared) while it trains on it, so
eviction never removes a tree in use, and a stale tree is moved aside only by a trainer that
holds its lock alone: while another trainer still trains on it, the new one builds its own
private tree beside it (trees/<key>~<token>, never reused, dropped once nobody holds it).

A tree records nothing of where the claim is mounted (data.yaml has no `path:`, symlinks are
relative), so a pod that mounts the claim elsewhere reuses it; a data.yaml written by an older
trainer with an absolute `path:` is rewritten when the tree is reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from retrainer_contract.layout import DATA_YAML

from retrainer_trainer import dataset, logs
from retrainer_trainer.datacache import PRIVATE, Cache, link_or_copy
from retrainer_trainer.fetch import Source, SourceFile

__all__ = [
    "MARKER",
    "build",
    "hold",
    "open_tree",
    "reuse",
    "scan_folder",
    "tree_key",
    "tree_sha256",
    "view",
]

TREE_FORMAT = "1"  # changes when what a tree holds changes: old trees are then never reused
MARKER = ".retrainer-tree.json"


def tree_sha256(files: dict[str, SourceFile]) -> str:
    """dataset.tree_sha256 from sha256s already known (the same value, nothing read)."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode())
        digest.update(b"\0" + files[rel].sha256.encode() + b"\n")
    return digest.hexdigest()


def scan_folder(root: Path, uri: str) -> Source:
    """A folder on the claim, each file read once: hashed, and an image decoded from the
    same bytes. An unreadable file is infrastructure (dataset.read_file's rule)."""
    files: dict[str, SourceFile] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        try:
            data = dataset.read_file(path)
        except OSError as error:
            raise dataset.unreadable(error, rel) from error
        decodes = None
        if path.suffix.lower() in dataset.IMAGE_SUFFIXES:
            decodes = not dataset.check_image_bytes(data, rel)
        files[rel] = SourceFile(str(path), hashlib.sha256(data).hexdigest(), len(data), decodes)
    return Source(uri=uri, files=files, root=root)


@contextlib.contextmanager
def view(source: Source, cache: Cache, *, full: bool = True) -> Iterator[Path]:
    """The source as a folder: itself on the claim, or its blobs hardlinked under their names
    (removed afterwards; the blobs stay). Not `full`: only its folders and data.yaml, enough
    for dataset.load when the files themselves are taken from `source.files`."""
    if source.root is not None:
        yield source.root
        return
    folder = cache.new_tmp("view")
    try:
        if full:
            for rel, file in source.files.items():
                link_or_copy(file.path, folder / rel)
        else:
            for parent in {os.path.dirname(rel) for rel in source.files} - {""}:
                os.makedirs(folder / parent, exist_ok=True)
            if DATA_YAML in source.files:
                link_or_copy(source.files[DATA_YAML].path, folder / DATA_YAML)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def tree_key(dataset_sha: str, corrections_sha: str) -> str:
    return hashlib.sha256(f"{TREE_FORMAT}\0{dataset_sha}\0{corrections_sha}".encode()).hexdigest()


def hold(cache: Cache, key: str) -> int:
    """Take the tree's lock (shared) for the rest of this process: eviction skips the tree."""
    return cache.hold(key)


def _exclusive(fd: int) -> bool:
    """Take the tree's lock exclusively when no other process holds it (True), else keep it
    shared (False).

    flock converts a lock by dropping it first, so a refused upgrade leaves none: it is taken
    shared again (cache.lock, held shared by the caller, keeps eviction out meanwhile).
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fcntl.flock(fd, fcntl.LOCK_SH)
        return False
    return True


def open_tree(cache: Cache, key: str, sources: list[Source]) -> tuple[str, dict[str, Any] | None]:
    """The tree this run trains on, held until the process ends: its name under trees/, and
    its marker when it is ready (None: build it under that name).

    A stale tree (a linked file is no longer its source's) is moved aside only when no other
    trainer holds it; otherwise this run builds a private tree and leaves that one alone.
    """
    fd = hold(cache, key)
    marker = reuse(cache, key, sources)
    if marker is not None or not (cache.trees / key).exists():
        return key, marker
    if _exclusive(fd):
        try:
            os.replace(cache.trees / key, cache.new_tmp("stale"))  # eviction drops it from tmp/
        finally:
            fcntl.flock(fd, fcntl.LOCK_SH)
        return key, None
    private = f"{key}{PRIVATE}{secrets.token_hex(4)}"
    hold(cache, private)
    cache.unhold(key)  # not used by this run: once its trainers end, the next one replaces it
    logs.event("dataset.tree.private", tree=key, private=private, reason="stale tree in use")
    return private, None


def _inodes(sources: list[Source]) -> set[tuple[int, int]]:
    found = set()
    for source in sources:
        for file in source.files.values():
            if file.inode is None:
                stat = os.stat(file.path)
                found.add((stat.st_dev, stat.st_ino))
            else:
                found.add(file.inode)
    return found


def reuse(cache: Cache, key: str, sources: list[Source]) -> dict[str, Any] | None:
    """The marker of a ready tree whose linked files are still their sources', else None
    (missing, or stale: open_tree decides what happens to a stale tree)."""
    tree = cache.trees / key
    try:
        marker: dict[str, Any] = json.loads((tree / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    inodes = _inodes(sources)
    written = set(marker.get("written", []))
    for rel in marker.get("linked", []):
        if rel in written:
            continue
        try:
            stat = os.stat(f"{tree}/{rel}")
        except OSError:
            stat = None
        if stat is None or (stat.st_dev, stat.st_ino) not in inodes:
            return None
    _mount_independent(tree, tuple(marker["names"]))
    return marker


def _mount_independent(tree: Path, names: tuple[str, ...]) -> None:
    """Rewrite a data.yaml that is not the one this trainer writes (an older trainer wrote
    the absolute `path:` of its own mount; another mount cannot train on it)."""
    try:
        current = (tree / DATA_YAML).read_text(encoding="utf-8")
    except OSError:
        current = ""
    if current != dataset.data_yaml_text(names):
        dataset.write_data_yaml(tree, names)
        logs.event("dataset.tree.data_yaml_rewritten", tree=tree.name)


def build(cache: Cache, key: str, populate: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Build the tree in tmp/, then rename it into trees/<key> (whole, or not at all).

    `populate(folder)` links and writes the files and returns the marker's content, with the
    files the folder holds as `linked` where it knows them (else the folder is read for them).
    When another trainer finished the same tree first, its tree is kept and this one dropped.
    """
    folder = cache.new_tmp("tree")
    final = cache.trees / key
    try:
        marker = populate(folder)
        if "linked" in marker:
            marker["linked"] = sorted(marker["linked"])
        else:
            marker["linked"] = sorted(
                p.relative_to(folder).as_posix()
                for p in folder.rglob("*")
                if p.is_file() and p.name != MARKER and p.suffix != ".cache"
            )
        (folder / MARKER).write_text(json.dumps(marker), encoding="utf-8")
        dataset.write_data_yaml(folder, tuple(marker["names"]))
        try:
            os.rename(folder, final)
        except OSError:
            if not (final / MARKER).is_file():
                raise
            return dict(json.loads((final / MARKER).read_text(encoding="utf-8")))
        return marker
    finally:
        shutil.rmtree(folder, ignore_errors=True)
