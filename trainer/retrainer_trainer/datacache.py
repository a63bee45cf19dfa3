"""The dataset cache on the claim: s3:// objects kept once, by content, for every version.

Re-downloading an unchanged dataset for each version of a line was most of a short run's
time, so objects are kept on the claim (shared by the model lines of a namespace) under their
sha256, and an object key + ETag is remembered as that sha256. Layout, below
`<storage root>/.retrainer/datasets/` (retrainer_contract.layout.DATASET_CACHE):

    blobs/<aa>/<sha256>          an object's bytes, read-only, named by its content
    blobs/<aa>/<sha256>.used     touched at each use: the clock of least-recently-used eviction
                                 (the blob's own mtime never changes: working trees hardlink
                                 the blob, and Ultralytics' label cache keys on its mtime)
    keys/<hh>/<hash>             bucket/key/ETag/size -> "sha256 size decodes" (decodes: the
                                 image was decoded once; validation need not decode it again)
    listings/<hash>.json         one s3:// folder as last prepared: each object's sha256 and
                                 the stamp (inode, size, mtime, ctime) its blob had then
    tmp/<hash>.part              a download in progress (resumed from its size), flock-ed by
                                 the one trainer writing it; renamed into blobs/ when complete
    trees/                       working trees (worktree.py)
    leases/<token>.lease         the blobs a live trainer uses, flock-ed while it lives (leases.py)
    cache.lock                   shared while a trainer links blobs, exclusive while evicting

Two trainers at once (the claim is shared by pods): every blob appears whole, by an atomic
rename of a complete file; one object is downloaded by one process at a time (an flock on its
`.part`); eviction waits until no trainer is between looking a blob up and linking it, and
never removes a blob a live trainer leased nor a tree one holds. Nothing here records where
the claim is mounted: symlinks (where the claim refuses hardlinks) are relative, so a pod that
mounts the claim elsewhere finds every tree as it was built.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrainer_contract import faults, integrity, layout

from retrainer_trainer import leases

__all__ = [
    "PRIVATE",
    "STALE_TMP_SECONDS",
    "Cache",
    "Entry",
    "Evicted",
    "link_or_copy",
    "locked",
]

STALE_TMP_SECONDS = 24 * 3600
PRIVATE = "~"  # trees/<key>~<token>: a tree built beside a stale one another trainer still holds


@dataclass(frozen=True)
class Entry:
    """One cached object: its blob, sha256 and size."""

    path: Path
    sha256: str
    size: int
    decodes: bool = False


@dataclass(frozen=True)
class Evicted:
    """What one eviction pass removed."""

    blobs: int
    bytes: int
    trees: int
    total_after: int


@contextlib.contextmanager
def locked(path: Path, operation: int) -> Iterator[bool]:
    """Hold an flock on `path` (created if missing); yields False when LOCK_NB found it busy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        try:
            fcntl.flock(fd, operation)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


class Cache:
    """The dataset cache of one claim."""

    def __init__(self, storage_root: Path, max_bytes: int) -> None:
        self.root = layout.dataset_cache_dir(storage_root)
        self.max_bytes = max_bytes
        self.blobs = self.root / "blobs"
        self._blobs = str(self.blobs)
        self._made: set[str] = set()
        self.keys = self.root / "keys"
        self._keys = str(self.keys)
        self.tmp = self.root / "tmp"
        self._tmp = str(self.tmp)
        self.trees = self.root / "trees"
        self.leases = self.root / "leases"
        self._leased: dict[Path, leases.Lease] = {}
        self._holds: dict[str, int] = {}  # tree name -> the descriptor of its shared lock
        for folder in (self.blobs, self.keys, self.tmp, self.trees, self.leases):
            folder.mkdir(parents=True, exist_ok=True)

    # ---- names -------------------------------------------------------------------------------

    @staticmethod
    def key_id(bucket: str, key: str, etag: str, size: int) -> str:
        """The name of one object version: its bucket, key, ETag and size."""
        text = f"{bucket}\0{key}\0{etag.strip(chr(34))}\0{size}"
        return hashlib.sha256(text.encode()).hexdigest()

    def blob(self, sha256: str) -> Path:
        return Path(self.blob_path(sha256))

    def blob_path(self, sha256: str) -> str:
        """The blob's path as a string (the per-object hot path makes no Path)."""
        return f"{self._blobs}/{sha256[:2]}/{sha256}"

    def _record_path(self, key_id: str) -> str:
        """The key record's path as a string (per object, like blob_path)."""
        return f"{self._keys}/{key_id[:2]}/{key_id}"

    def _key_record(self, key_id: str) -> Path:
        return self.keys / key_id[:2] / key_id

    def part_path(self, key_id: str) -> str:
        """part() as a string (the per-object hot path makes no Path)."""
        return f"{self._tmp}/{key_id}.part"

    def part(self, key_id: str) -> Path:
        return self.tmp / f"{key_id}.part"

    def lock(self) -> Path:
        return self.root / "cache.lock"

    def _listing(self, bucket: str, prefix: str) -> Path:
        name = hashlib.sha256(f"{bucket}\0{prefix}".encode()).hexdigest()
        return self.root / "listings" / f"{name}.json"

    # ---- stamps: a blob unchanged since it was last verified is not read again ----------------

    @staticmethod
    def stamp(path: str | os.PathLike[str]) -> str:
        """What any write, truncation, chmod or replacement of a file changes (its ctime
        cannot be set back by a process). Silent media corruption leaves it: the claim's
        storage checksums are what catch that."""
        st = os.stat(path)
        return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"

    def trusted(self, bucket: str, prefix: str) -> dict[str, list[Any]]:
        """key id -> [sha256, size, stamp, decodes] of a folder as last prepared."""
        try:
            data = json.loads(self._listing(bucket, prefix).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def remember(self, bucket: str, prefix: str, entries: dict[str, tuple[str, int, bool]]) -> None:
        """Record each key id's blob with its stamp now (after the working tree was linked:
        linking changes a blob's ctime)."""
        listing: dict[str, list[Any]] = {}
        for key_id, (sha256, size, decodes) in entries.items():
            try:
                listing[key_id] = [sha256, size, self.stamp(self.blob(sha256)), decodes]
            except OSError:
                continue
        path = self._listing(bucket, prefix)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_text(path, json.dumps(listing))

    # ---- reading -----------------------------------------------------------------------------

    def key_shards(self) -> set[str]:
        """The key records' folders there are (`keys/<hh>`): in a new cache, none."""
        try:
            return set(os.listdir(self.keys))
        except FileNotFoundError:
            return set()

    def lookup(self, key_id: str) -> Entry | None:
        """The blob recorded for an object version, if both the record and the blob exist."""
        try:
            fd = os.open(self._record_path(key_id), os.O_RDONLY)
        except OSError:
            return None
        try:
            sha256, size, decodes = os.read(fd, 256).decode("ascii").split()
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
        path = self.blob_path(sha256)
        try:
            if os.stat(path).st_size != int(size):
                return None
        except OSError:
            return None
        return Entry(Path(path), sha256, int(size), decodes == "1")

    def intact(self, entry: Entry) -> bool:
        """Read the blob again: does it still hash to its name? (catches any corruption)"""
        try:
            return integrity.sha256_file(entry.path) == (entry.sha256, entry.size)
        except FileNotFoundError:
            raise
        except OSError:
            return False

    # ---- writing -----------------------------------------------------------------------------

    def discard(self, entry: Entry) -> None:
        """Drop a blob found corrupted (its name only: working trees keep their own inode)."""
        entry.path.unlink(missing_ok=True)

    def commit(
        self,
        part: str | os.PathLike[str],
        key_id: str,
        sha256: str,
        size: int,
        decodes: bool = False,
        fd: int | None = None,
    ) -> Entry:
        """Move a complete, hashed download (`fd`: open on it) into blobs/ and record its key;
        idempotent.

        The key record is written in place, not renamed in: it is one short line that only
        parses whole (a reader of a half-written or torn one sees no record and waits on the
        part's lock, which is held until the record is complete). It is written before the
        part moves: a trainer that opens the part's name once it has moved makes a new part,
        locks it at once and must find the record then, or it fetches the object again (a
        record whose blob is not there yet is no record to `lookup`)."""
        target = self.blob_path(sha256)
        self._folder(f"{self._keys}/{key_id[:2]}")
        handle = os.open(self._record_path(key_id), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o664)
        try:
            os.write(handle, f"{sha256} {size} {int(decodes)}\n".encode("ascii"))
        finally:
            os.close(handle)
        self._folder(f"{self._blobs}/{sha256[:2]}")
        if fd is None:
            os.chmod(part, 0o444)
        else:
            os.fchmod(fd, 0o444)
        os.replace(part, target)  # the same bytes under the same name: a race is harmless
        return Entry(Path(target), sha256, size, decodes)

    def _folder(self, path: str) -> None:
        """Make a blobs/ or keys/ subfolder once per process (commit runs per object)."""
        if path not in self._made:
            os.makedirs(path, exist_ok=True)
            self._made.add(path)

    def touch(self, shas: Iterable[str]) -> None:
        """Mark blobs as used now (the LRU clock)."""
        for sha256 in shas:
            stamp = self.blob(sha256).with_suffix(".used")
            try:
                os.utime(stamp)
            except FileNotFoundError:
                stamp.touch()

    def lease(self, shas: Iterable[str]) -> leases.Lease:
        """Lease the blobs this trainer uses until it exits: no other trainer's eviction
        removes them (a tree of symlinks reads them until the last epoch)."""
        taken = leases.take(self.leases, self.tmp, shas)
        self._leased[taken.path] = taken
        return taken

    def hold(self, tree: str) -> int:
        """Take a working tree's lock (shared) until this process ends: eviction skips it and
        no other trainer moves it aside. Holding it again is a no-op."""
        if tree not in self._holds:
            fd = os.open(self.trees / f"{tree}.lock", os.O_RDWR | os.O_CREAT, 0o664)
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._holds[tree] = fd
        return self._holds[tree]

    def unhold(self, tree: str) -> None:
        """Let go of a tree this process will not use after all."""
        fd = self._holds.pop(tree, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Let go of every tree held and lease taken, as a trainer's exit does (tests model two
        trainers in one process with this; the trainer itself holds them until it exits)."""
        for lease in self._leased.values():
            lease.release()
        for fd in self._holds.values():
            os.close(fd)
        self._leased.clear()
        self._holds.clear()

    # ---- eviction ----------------------------------------------------------------------------

    def _blobs_by_age(self) -> list[tuple[float, str, int]]:
        """(last use, sha256, size) of every blob, oldest first; a blob never marked used
        (its trainer died before) counts from when it was written."""
        used: dict[str, float] = {}
        blobs: dict[str, tuple[float, int]] = {}
        for folder in self.blobs.iterdir():
            for entry in os.scandir(folder):
                name, _, suffix = entry.name.partition(".")
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue
                if suffix == "used":
                    used[name] = stat.st_mtime
                elif not suffix:
                    blobs[name] = (stat.st_mtime, stat.st_size)
        for name in set(used) - set(blobs):  # a blob discarded or evicted halfway
            Path(f"{self.blob(name)}.used").unlink(missing_ok=True)
        return sorted((used.get(n, m), n, size) for n, (m, size) in blobs.items())

    def evict(self, keep: set[str], keep_trees: set[str]) -> Evicted:
        """Bring the cache under its cap: unused working trees first, then the least recently
        used blobs, never one in `keep` (what this run uses) nor one a live trainer leased.
        Waits for no trainer to be linking blobs (cache.lock exclusive). Private trees (built
        beside a stale tree another trainer held) are never reused: they go once unheld."""
        with locked(self.lock(), fcntl.LOCK_EX):
            self._sweep_tmp()
            keep_trees = keep_trees | set(self._holds)  # never re-locked from here (leases.py)
            trees = self._drop_unused_trees(keep_trees, private_only=True)
            blobs = self._blobs_by_age()
            total = sum(size for _, _, size in blobs)
            if total <= self.max_bytes:
                return Evicted(0, 0, trees, total)
            trees += self._drop_unused_trees(keep_trees)
            keep = keep | leases.live(self.leases, set(self._leased))
            removed = freed = 0
            for _, sha256, size in blobs:
                if total <= self.max_bytes:
                    break
                if sha256 in keep:
                    continue
                for suffix in ("", ".used"):
                    Path(f"{self.blob(sha256)}{suffix}").unlink(missing_ok=True)
                removed, freed, total = removed + 1, freed + size, total - size
            return Evicted(removed, freed, trees, total)

    def _sweep_tmp(self) -> None:
        """Remove what dead trainers left in tmp/ a day ago or more: partial downloads (a
        live one is touched by every write), trees and views never finished, stale trees."""
        old = time.time() - STALE_TMP_SECONDS
        for entry in os.scandir(self.tmp):
            try:
                if entry.stat(follow_symlinks=False).st_mtime > old:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue

    def _drop_unused_trees(self, keep: set[str], *, private_only: bool = False) -> int:
        """Remove the working trees no trainer holds (they hardlink blobs, keeping their bytes
        on the claim after the blob's name is gone); rebuilding one is only links."""
        dropped = 0
        for tree in sorted(self.trees.iterdir()):
            if not tree.is_dir() or tree.name in keep:
                continue
            if private_only and PRIVATE not in tree.name:
                continue
            with locked(self.trees / f"{tree.name}.lock", fcntl.LOCK_EX | fcntl.LOCK_NB) as free:
                if free:
                    shutil.rmtree(tree, ignore_errors=True)
                    dropped += 1
        return dropped

    def new_tmp(self, prefix: str) -> Path:
        """A fresh folder on the claim next to the blobs (hardlinks need the same filesystem)."""
        path = self.tmp / f"{prefix}-{secrets.token_hex(6)}"
        path.mkdir(parents=True)
        return path


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(text, encoding="ascii")
    os.replace(tmp, path)


def _hardlink(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    if faults.active(faults.TRAINER_NO_HARDLINKS):  # a fault test's claim that refuses them
        raise OSError(errno.EXDEV, "Invalid cross-device link (fault test)", str(target))
    os.link(source, target)


def link_or_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> str:
    """Hardlink `source` at `target` (its folder made if missing); a symlink where the
    filesystem refuses hardlinks. Called once per dataset file: plain os calls.

    The symlink is relative (from the target's real folder to the source's real path): a tree
    and what it links move together when the claim is mounted somewhere else, and a tree built
    in tmp/<name>/ and renamed to trees/<name>/ keeps its depth below the cache.
    """
    try:
        try:
            _hardlink(source, target)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _hardlink(source, target)
        return "hardlink"
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    os.symlink(os.path.relpath(os.path.realpath(source), os.path.realpath(folder)), target)
    return "symlink"
