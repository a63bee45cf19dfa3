"""Fetch an s3:// folder into the dataset cache: in parallel, retried, resumed, hashed once.

Each object is looked up by key + ETag first; a hit is re-read and must still hash to its
name (a corrupted blob is dropped and fetched again). A miss is streamed into the cache's
tmp/ (hashed on the way, never read again), resumed from what a failed attempt or an earlier
pod left there, then renamed into blobs/. At most `concurrency` objects are in flight; the
main thread alone prints the progress events. An image is decoded once, from the bytes just
fetched, and the cache remembers that it decodes.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from minio.error import S3Error
from retrainer_contract import layout

from retrainer_trainer import dataset, listing, logs
from retrainer_trainer.datacache import Cache, Entry, locked
from retrainer_trainer.errors import BadInput, TrainerError

__all__ = ["ATTEMPTS", "Fetched", "Source", "SourceFile", "fetch_prefix", "remember"]

ATTEMPTS = 5  # per object; a resumed attempt continues where the last one stopped
CHUNK = 1024 * 1024
PROGRESS_SECONDS = 5.0
DECODE_IN_MEMORY = 64 * 1024 * 1024  # images up to this size are decoded from memory
HIT_BATCH = 64  # cached objects re-read per task
_MD5_ETAG = re.compile(r"^[0-9a-fA-F]{32}$")  # a single-part upload's ETag is its MD5

_Objects = list[tuple[str, listing.Listed]]  # (path below the prefix, the object)


@dataclass(frozen=True)
class SourceFile:
    """One file of an input folder: where its bytes are, their sha256 and size, and whether
    it is known to decode (None: not an image, or not checked yet)."""

    path: str  # a plain string: made once per object, tens of thousands of times
    sha256: str
    size: int
    decodes: bool | None = None
    inode: tuple[int, int] | None = None  # (st_dev, st_ino) where already known


@dataclass
class Source:
    """An input folder as files by relative POSIX path (a folder on the claim, or blobs)."""

    uri: str
    files: dict[str, SourceFile]
    root: Path | None = None  # the folder itself when the input is a folder on the claim
    bucket: str = ""
    prefix: str = ""
    key_ids: dict[str, str] = field(default_factory=dict)  # rel -> the cache's key id
    stamped: int = 0  # files taken as they were (their blob's stamp unchanged)


@dataclass
class Fetched:
    """Counts of one fetch (what came from the object store, what from the cache)."""

    files: int = 0
    bytes: int = 0
    fetched_files: int = 0
    fetched_bytes: int = 0
    cached_files: int = 0
    refetched_corrupt: int = 0
    retries: int = 0
    seconds: float = 0.0
    shas: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        """Add to counters from a worker thread."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


def _is_image(rel: str) -> bool:
    return PurePosixPath(rel).suffix.lower() in dataset.IMAGE_SUFFIXES


def _decodes(data: bytes) -> bool:
    return not dataset.check_image_bytes(data, "")


@dataclass(frozen=True)
class _Item:
    rel: str
    key: str
    etag: str
    size: int
    missing: bool = False  # not in the cache when planned: no need to look again before locking


class _Worker:
    """Fetches one object into the cache (called from the pool's threads)."""

    def __init__(self, client: Any, cache: Cache, bucket: str, stats: Fetched) -> None:
        self.client, self.cache, self.bucket, self.stats = client, cache, bucket, stats

    def some(self, items: list[_Item]) -> list[tuple[str, SourceFile]]:
        return [(i.rel, self(i.rel, i.key, i.etag, i.size, i.missing)) for i in items]

    def __call__(
        self, rel: str, key: str, etag: str, size: int, missing: bool = False
    ) -> SourceFile:
        key_id = self.cache.key_id(self.bucket, key, etag, size)
        entry = None if missing else self._hit(key_id)
        if entry is None:
            lock = self.cache.part_lock(key_id)
            with locked(lock, fcntl.LOCK_EX):
                entry = self._hit(key_id)  # another trainer may have fetched it meanwhile
                if entry is None:
                    fetched = self._fetch(rel, key, etag, size, key_id)
                    # Whoever still waits on this lock finds the blob; only then is it removed.
                    lock.unlink(missing_ok=True)
                    return fetched
        self.stats.add(cached_files=1)
        return SourceFile(str(entry.path), entry.sha256, entry.size, entry.decodes)

    def _hit(self, key_id: str) -> Entry | None:
        entry = self.cache.lookup(key_id)
        if entry is None:
            return None
        try:
            if self.cache.intact(entry):
                return entry
        except FileNotFoundError:
            return None  # evicted meanwhile: a plain miss
        logs.event("dataset.cache.corrupt", blob=entry.sha256, path=str(entry.path))
        self.cache.discard(entry)
        self.stats.add(refetched_corrupt=1)
        return None

    def _fetch(self, rel: str, key: str, etag: str, size: int, key_id: str) -> SourceFile:
        part = self.cache.part(key_id)
        keep = _is_image(rel) and size <= DECODE_IN_MEMORY
        for attempt in range(1, ATTEMPTS + 1):
            try:
                digest, data = self._stream(part, key, etag, size, keep)
                break
            except TrainerError:
                raise  # bad input, or the object changed meanwhile: retrying cannot help
            except Exception as error:  # connection resets, timeouts, 5xx: resume and retry
                if attempt == ATTEMPTS:
                    raise _infra(error, f"s3://{self.bucket}/{key}") from error
                self.stats.add(retries=1)
                time.sleep(min(0.2 * 2**attempt, 5.0))
        decodes = _decodes(bytes(data)) if keep else None
        entry = self.cache.commit(part, key_id, digest.hexdigest(), size, bool(decodes))
        self.stats.add(fetched_files=1, fetched_bytes=size)
        sha256 = entry.sha256
        return SourceFile(str(entry.path), sha256, size, decodes)

    def _stream(
        self, part: Path, key: str, etag: str, size: int, keep: bool
    ) -> tuple[Any, bytearray]:
        """Append the rest of the object to `part`, hashing all of it; the bytes if kept."""
        digest, data = hashlib.sha256(), bytearray()
        have = part.stat().st_size if part.exists() else 0
        if have > size:
            part.unlink()
            have = 0
        # Bytes kept from an earlier attempt are checked against the store's MD5 ETag (a
        # single-part upload's), so a damaged partial file is never completed into a blob.
        md5 = hashlib.md5(usedforsecurity=False) if have and _MD5_ETAG.match(etag) else None
        with open(part, "ab+") as out:
            out.seek(0)
            while chunk := out.read(CHUNK):  # what an earlier attempt left: hash it first
                digest.update(chunk)
                if md5 is not None:
                    md5.update(chunk)
                if keep:
                    data += chunk
            if have < size:
                headers = {"If-Match": f'"{etag}"'} if etag else None
                try:
                    response = self.client.get_object(
                        self.bucket, key, offset=have, request_headers=headers
                    )
                except S3Error as error:
                    if error.code in ("PreconditionFailed", "NoSuchKey"):
                        part.unlink(missing_ok=True)
                        raise TrainerError(
                            f"s3://{self.bucket}/{key} changed while it was fetched; the Job "
                            "retries with the new version"
                        ) from error
                    raise
                try:
                    for chunk in response.stream(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        if md5 is not None:
                            md5.update(chunk)
                        if keep:
                            data += chunk
                finally:
                    response.close()
                    response.release_conn()
        if part.stat().st_size != size:
            raise OSError(f"short read: {part.stat().st_size} of {size} bytes")
        if md5 is not None and md5.hexdigest() != etag.lower():
            part.unlink()
            raise OSError(f"a resumed download of {key} does not match its ETag: fetched again")
        return digest, data


def _infra(error: Exception, uri: str) -> TrainerError:
    return TrainerError(f"cannot read {uri} from MinIO: {type(error).__name__}: {error}")


def _listing(client: Any, bucket: str, prefix: str, field_name: str) -> _Objects:
    objects = []
    try:
        for obj in listing.objects(client, bucket, prefix):
            rel = obj.object_name[len(prefix) :]
            if ".." in PurePosixPath(rel).parts:
                raise BadInput(f"{field_name}: object {obj.object_name!r} escapes the prefix")
            objects.append((rel, obj))
    except S3Error as error:
        if error.code == "NoSuchBucket":
            raise BadInput(f"{field_name}: bucket {bucket!r} does not exist") from error
        raise _infra(error, f"s3://{bucket}/{prefix}") from error
    except BadInput:
        raise
    except Exception as error:  # urllib3 connection errors and the like
        raise _infra(error, f"s3://{bucket}/{prefix}") from error
    return objects


def _plan(
    cache: Cache,
    bucket: str,
    prefix: str,
    objects: list[tuple[str, listing.Listed]],
    stats: Fetched,
) -> tuple[dict[str, SourceFile], list[list[_Item]], dict[str, str]]:
    """Sort the objects: blobs unchanged since they were last verified (taken as they are),
    misses (each its own task: one request each, in parallel), and other hits (re-read in
    batches: a task per file would cost more than the read)."""
    trusted = cache.trusted(bucket, prefix)
    ready: dict[str, SourceFile] = {}
    misses: list[list[_Item]] = []
    hits: list[_Item] = []
    key_ids: dict[str, str] = {}
    for rel, obj in objects:
        item = _Item(rel, obj.object_name, obj.etag, obj.size)
        key_id = key_ids[rel] = cache.key_id(bucket, item.key, item.etag, item.size)
        known = trusted.get(key_id)
        if known is not None:
            path = cache.blob_path(known[0])
            try:
                unchanged = cache.stamp(path) == known[2]
            except OSError:
                unchanged = False
            if unchanged:
                dev, ino = known[2].split(":")[:2]
                ready[rel] = SourceFile(
                    path, known[0], int(known[1]), known[3], (int(dev), int(ino))
                )
                continue
        if cache.lookup(key_id) is None:
            misses.append([_Item(rel, item.key, item.etag, item.size, missing=True)])
        else:
            hits.append(item)
    stats.add(cached_files=len(ready))
    batches = [hits[i : i + HIT_BATCH] for i in range(0, len(hits), HIT_BATCH)]
    return ready, misses + batches, key_ids


def remember(cache: Cache, source: Source, tree_reused: bool) -> None:
    """Mark the blobs of an s3:// input used, and stamp them once its working tree is linked
    (fetch_prefix then takes them as they are next time, unless something changed them)."""
    if not source.key_ids:
        return
    cache.touch({f.sha256 for f in source.files.values()})
    if tree_reused and source.stamped == len(source.files):
        return  # every stamp still holds: nothing to write
    entries = {
        key_id: (source.files[rel].sha256, source.files[rel].size, bool(source.files[rel].decodes))
        for rel, key_id in source.key_ids.items()
    }
    cache.remember(source.bucket, source.prefix, entries)


def fetch_prefix(
    client: Any,
    uri: str,
    cache: Cache,
    *,
    concurrency: int,
    field_name: str,
    on_progress: Callable[[Fetched], None] | None = None,
) -> tuple[Source, Fetched]:
    """Every object under `s3://bucket/prefix/`, from the cache or MinIO, into the cache."""
    started = time.monotonic()
    bucket, prefix = layout.parse_s3_uri(uri)
    prefix = f"{prefix.rstrip('/')}/" if prefix else ""
    objects = _listing(client, bucket, prefix, field_name)
    if not objects:
        raise BadInput(f"{field_name}: nothing found at {uri}; upload the folder there first")
    stats = Fetched(files=len(objects), bytes=sum(o.size for _, o in objects))
    logs.event("dataset.fetch.start", uri=uri, files=stats.files, bytes=stats.bytes)
    worker = _Worker(client, cache, bucket, stats)
    files, work, key_ids = _plan(cache, bucket, prefix, objects, stats)
    stamped = len(files)
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        pending = [pool.submit(worker.some, batch) for batch in work]
        reported = time.monotonic()
        try:
            for future in as_completed(pending):  # one waiter per future, not one per wait
                files.update(future.result())
                if time.monotonic() - reported >= PROGRESS_SECONDS:
                    reported = time.monotonic()
                    _progress(uri, stats, len(files))
                    if on_progress is not None:
                        on_progress(stats)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    stats.seconds = time.monotonic() - started
    stats.shas = {f.sha256 for f in files.values()}
    logs.event(
        "dataset.fetch.done",
        uri=uri,
        files=stats.files,
        bytes=stats.bytes,
        fetchedFiles=stats.fetched_files,
        fetchedBytes=stats.fetched_bytes,
        cachedFiles=stats.cached_files,
        corruptRefetched=stats.refetched_corrupt,
        retries=stats.retries,
        seconds=round(stats.seconds, 3),
    )
    source = Source(uri, dict(sorted(files.items())), None, bucket, prefix, key_ids, stamped)
    return source, stats


def _progress(uri: str, stats: Fetched, done: int) -> None:
    logs.event(
        "dataset.fetch.progress",
        uri=uri,
        files=done,
        of=stats.files,
        fetchedBytes=stats.fetched_bytes,
        cachedFiles=stats.cached_files,
    )
