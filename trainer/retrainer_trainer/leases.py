"""Leases: which cached blobs a live trainer still reads, so no other trainer evicts them.

Eviction used to spare only the blobs of the run that evicted. With hardlinks that was enough
(a working tree keeps its inodes after a blob's name is gone), but where the claim refuses
hardlinks a tree is symlinks into `blobs/`, and evicting a blob another trainer trains on
broke that trainer mid-epoch. So each trainer, once its dataset is ready and before it lets go
of `cache.lock`, writes the sha256s it uses into `leases/<token>.lease` and holds an exclusive
flock on that file until it exits; eviction keeps every blob of every lease it cannot lock.

A killed trainer (OOM, a lost node) leaves its lease file, but not its lock: the kernel drops
an flock when the process dies (on NFS, when the dead client's lease with the server lapses).
Eviction takes such a lease's lock at once, so it treats the lease as stale and removes it.
A lease appears whole and already locked: it is written and locked under tmp/, then renamed.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from retrainer_trainer import logs

__all__ = ["SUFFIX", "Lease", "live", "take"]

SUFFIX = ".lease"


@dataclass
class Lease:
    """One trainer's lease: its file and the descriptor whose flock keeps it alive."""

    path: Path
    fd: int

    def release(self) -> None:
        """End the lease (a process that exits ends it anyway, the kernel drops the lock)."""
        self.path.unlink(missing_ok=True)
        os.close(self.fd)


def take(folder: Path, scratch: Path, shas: Iterable[str]) -> Lease:
    """Lease `shas` until this process ends: written and locked in `scratch`, then renamed
    into `folder`, so eviction never sees a lease that is unlocked or half written."""
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    tmp = scratch / f"lease-{token}"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o664)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = "".join(f"{sha}\n" for sha in sorted(shas)).encode("ascii")
        while data:  # on this descriptor: closing another one could drop an emulated flock
            data = data[os.write(fd, data) :]
        path = folder / f"{token}{SUFFIX}"
        os.replace(tmp, path)  # the flock belongs to the inode: it moves with the file
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return Lease(path, fd)


def live(folder: Path, own: set[Path]) -> set[str]:
    """The blobs leased by live trainers; the leases of dead ones are removed.

    `own` are this process's leases: never locked from here (the caller keeps their blobs
    anyway, and where flock is emulated with POSIX locks, closing a second descriptor of a file
    would drop this process's own lock on it).
    """
    kept: set[str] = set()
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return kept
    for entry in entries:
        path = Path(entry.path)
        if not entry.name.endswith(SUFFIX) or path in own:
            continue
        shas = _held(path)
        if shas is not None:
            kept |= shas
    return kept


def _held(path: Path) -> set[str] | None:
    """The lease's blobs while its trainer lives; None (and the file removed) once it died."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None  # released meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(path)
        os.unlink(path)  # its trainer is gone: nobody holds the lock
        logs.event("dataset.cache.lease_stale", lease=path.name)
        return None
    finally:
        os.close(fd)


def _read(path: Path) -> set[str]:
    """A live lease's blobs (whole: it was renamed in); empty once its trainer released it."""
    try:
        with open(path, encoding="ascii") as handle:
            return {line.strip() for line in handle if line.strip()}
    except FileNotFoundError:
        return set()
