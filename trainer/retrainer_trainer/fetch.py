"""Fetch an s3:// folder into the dataset cache: in parallel, retried, resumed, hashed once.

Each object is looked up by key + ETag first; a hit is re-read and must still hash to its
name (a corrupted blob is dropped and fetched again). A miss is streamed into the cache's
tmp/ (hashed on the way, never read again), resumed from what a failed attempt or an earlier
pod left there, then renamed into blobs/. At most `concurrency` objects are in flight; the
main thread alone prints the progress events. An image is decoded once, from the bytes just
fetched, and the cache remembers that it decodes.

Per object a miss costs the claim three entries made or moved (its part file, the rename into
blobs/, its key record): the part file is its own lock (an flock on it while it is written), so
no lock file is made and removed beside it, and the key record is one line written in place.
A small object (up to SMALL, one chunk) is downloaded into memory by the fetching thread,
which goes on to the next request while a committing thread writes, hashes, checks and commits
it (holding its lock until then): the `concurrency` requests in flight never wait on the claim.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from minio.error import S3Error
from retrainer_contract import layout

from retrainer_trainer import dataset, listing, logs
from retrainer_trainer.datacache import Cache, Entry
from retrainer_trainer.errors import BadInput, TrainerError

__all__ = ["ATTEMPTS", "Fetched", "Source", "SourceFile", "fetch_prefix", "remember"]

ATTEMPTS = 5  # per object; a resumed attempt continues where the last one stopped
CHUNK = 1024 * 1024
PROGRESS_SECONDS = 5.0
DECODE_IN_MEMORY = 64 * 1024 * 1024  # images up to this size are decoded from memory
HIT_BATCH = 64  # cached objects re-read per task
# Objects up to one chunk are committed by a committing thread from memory: a cut-off download
# of one never left a whole chunk to resume from, so nothing of resuming is lost.
SMALL = CHUNK
COMMIT_THREADS = 4
BACKLOG = 2  # small objects fetched and waiting to be committed, per fetching thread
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
    return os.path.splitext(rel)[1].lower() in dataset.IMAGE_SUFFIXES


def _decodes(data: bytes) -> bool:
    return not dataset.check_image_bytes(data, "")


@dataclass(frozen=True)
class _Item:
    rel: str
    key: str
    etag: str
    size: int
    missing: bool = False  # not in the cache when planned: no need to look again before locking


Got = SourceFile | Future[SourceFile]  # a file, or one a committing thread is writing


class _Worker:
    """Fetches one object into the cache (called from the pool's threads). With `committer`
    (a pool) and `backlog` (its bound), a small object is handed to a committing thread."""

    def __init__(
        self,
        client: Any,
        cache: Cache,
        bucket: str,
        stats: Fetched,
        committer: ThreadPoolExecutor | None = None,
        backlog: threading.Semaphore | None = None,
    ) -> None:
        self.client, self.cache, self.bucket, self.stats = client, cache, bucket, stats
        self.committer, self.backlog = committer, backlog

    def some(self, items: list[_Item]) -> list[tuple[str, Got]]:
        return [(i.rel, self(i.rel, i.key, i.etag, i.size, i.missing)) for i in items]

    def __call__(self, rel: str, key: str, etag: str, size: int, missing: bool = False) -> Got:
        key_id = self.cache.key_id(self.bucket, key, etag, size)
        entry = None if missing else self._hit(key_id)
        if entry is None:
            found = self._fetch_once(rel, key, etag, size, key_id)
            if not isinstance(found, Entry):
                return found
            entry = found
        self.stats.add(cached_files=1)
        return SourceFile(str(entry.path), entry.sha256, entry.size, entry.decodes)

    def _fetch_once(self, rel: str, key: str, etag: str, size: int, key_id: str) -> Got | Entry:
        """Fetch the object into the cache unless another trainer did: what this one fetched,
        or the blob the other one committed.

        The part file is the lock: opened (made if missing) and flock-ed. Once the lock is
        ours, the path must still name the file locked: the trainer before us renamed its
        part into blobs/ (or dropped it) while we waited, and then the blob is looked up
        again. Whoever waits on a part finds the blob once the lock is let go.
        """
        part = self.cache.part_path(key_id)
        while True:
            fd = _open_part(part)
            handed = False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                current = _names(part, fd)
                entry = self._hit(key_id)  # another trainer may have fetched it meanwhile
                if entry is not None:
                    if current:  # a part opened anew for an object already in: not needed
                        _unlink(part)
                    return entry
                if not current:
                    continue
                if self.committer is None or size > SMALL or os.fstat(fd).st_size:
                    return self._fetch(fd, part, rel, key, etag, size, key_id)
                data = self._download(part, key, etag, size)
                assert self.backlog is not None
                self.backlog.acquire()  # bounded: memory never holds more than the backlog
                handed = True  # the committing thread closes `fd`: the lock goes with it
                return self.committer.submit(self._commit, fd, part, rel, key, data, key_id)
            finally:
                if not handed:
                    os.close(fd)  # the part is in blobs/ by now, or was dropped: the lock goes

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

    def _fetch(
        self, fd: int, part: str, rel: str, key: str, etag: str, size: int, key_id: str
    ) -> SourceFile:
        keep = _is_image(rel) and size <= DECODE_IN_MEMORY
        for attempt in range(1, ATTEMPTS + 1):
            try:
                digest, data = self._stream(fd, part, key, etag, size, keep)
                break
            except TrainerError:
                raise  # bad input, or the object changed meanwhile: retrying cannot help
            except Exception as error:  # connection resets, timeouts, 5xx: resume and retry
                if attempt == ATTEMPTS:
                    raise _infra(error, f"s3://{self.bucket}/{key}") from error
                self.stats.add(retries=1)
                time.sleep(min(0.2 * 2**attempt, 5.0))
        decodes = _decodes(bytes(data)) if keep else None
        entry = self.cache.commit(part, key_id, digest.hexdigest(), size, bool(decodes), fd=fd)
        self.stats.add(fetched_files=1, fetched_bytes=size)
        sha256 = entry.sha256
        return SourceFile(str(entry.path), sha256, size, decodes)

    def _download(self, part: str, key: str, etag: str, size: int) -> bytes:
        """A small object's bytes, with the retries of `_fetch` (its part stays empty)."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = self._request(part, key, etag, 0)
                try:
                    data = b"".join(response.stream(CHUNK))
                finally:
                    response.close()
                    response.release_conn()
                if len(data) != size:
                    raise OSError(f"short read: {len(data)} of {size} bytes")
                return data
            except TrainerError:
                raise  # the object changed meanwhile: retrying cannot help
            except Exception as error:  # connection resets, timeouts, 5xx: retry
                if attempt == ATTEMPTS:
                    raise _infra(error, f"s3://{self.bucket}/{key}") from error
                self.stats.add(retries=1)
                time.sleep(min(0.2 * 2**attempt, 5.0))
        raise AssertionError("unreachable")  # pragma: no cover

    def _commit(
        self, fd: int, part: str, rel: str, key: str, data: bytes, key_id: str
    ) -> SourceFile:
        """In a committing thread: write a small object's bytes into its (locked, empty) part,
        hash and check them, commit the blob; then let go of the lock."""
        try:
            try:
                _write_all(fd, data)
            except OSError as error:
                raise _infra(error, f"s3://{self.bucket}/{key}") from error
            sha256 = hashlib.sha256(data).hexdigest()
            decodes = _decodes(data) if _is_image(rel) else None
            size = len(data)
            entry = self.cache.commit(part, key_id, sha256, size, bool(decodes), fd=fd)
            self.stats.add(fetched_files=1, fetched_bytes=size)
            return SourceFile(str(entry.path), entry.sha256, size, decodes)
        finally:
            os.close(fd)
            assert self.backlog is not None
            self.backlog.release()

    def _request(self, part: str, key: str, etag: str, offset: int) -> Any:
        """GET the object from `offset`, only as long as it is the version listed (ETag)."""
        headers = {"If-Match": f'"{etag}"'} if etag else None
        try:
            return self.client.get_object(self.bucket, key, offset=offset, request_headers=headers)
        except S3Error as error:
            if error.code in ("PreconditionFailed", "NoSuchKey"):
                _unlink(part)
                raise TrainerError(
                    f"s3://{self.bucket}/{key} changed while it was fetched; the Job retries "
                    "with the new version"
                ) from error
            raise

    def _stream(
        self, fd: int, part: str, key: str, etag: str, size: int, keep: bool
    ) -> tuple[Any, bytearray]:
        """Append the rest of the object to the part file open on `fd`, hashing all of it;
        the bytes if kept. Only `fd` is read and written (and never another descriptor of
        the part closed): where flock is emulated with POSIX locks, closing any descriptor of
        the file would let go of the lock."""
        digest, data = hashlib.sha256(), bytearray()
        have = os.fstat(fd).st_size
        if have > size:
            os.ftruncate(fd, 0)
            have = 0
        # Bytes kept from an earlier attempt are checked against the store's MD5 ETag (a
        # single-part upload's), so a damaged partial file is never completed into a blob.
        md5 = hashlib.md5(usedforsecurity=False) if have and _MD5_ETAG.match(etag) else None
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, CHUNK):  # what an earlier attempt left: hash it first
            digest.update(chunk)
            if md5 is not None:
                md5.update(chunk)
            if keep:
                data += chunk
        if have < size:
            response = self._request(part, key, etag, have)
            try:
                for chunk in response.stream(CHUNK):
                    _write_all(fd, chunk)
                    digest.update(chunk)
                    if md5 is not None:
                        md5.update(chunk)
                    if keep:
                        data += chunk
            finally:
                response.close()
                response.release_conn()
        written = os.fstat(fd).st_size
        if written != size:
            raise OSError(f"short read: {written} of {size} bytes")
        if md5 is not None and md5.hexdigest() != etag.lower():
            os.ftruncate(fd, 0)  # kept locked: the next attempt fetches it whole
            raise OSError(f"a resumed download of {key} does not match its ETag: fetched again")
        return digest, data


def _open_part(part: str) -> int:
    """A descriptor on the part file (made, empty, where there is none), for reading,
    appending and its lock."""
    try:
        return os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:  # tmp/ itself went (a claim cleaned by hand): made again
        os.makedirs(os.path.dirname(part), exist_ok=True)
        return os.open(part, os.O_RDWR | os.O_CREAT, 0o644)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _names(path: str, fd: int) -> bool:
    """Whether `path` still names the file open on `fd` (not renamed away, removed or
    replaced meanwhile)."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
    shards = cache.key_shards()  # a key whose shard folder is missing has no record: a miss
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
        if key_id[:2] not in shards or cache.lookup(key_id) is None:
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
    files, work, key_ids = _plan(cache, bucket, prefix, objects, stats)
    stamped = len(files)
    threads = max(1, concurrency)
    committing: list[tuple[str, Future[SourceFile]]] = []
    failed: list[BaseException] = []

    def _note_failure(done: Future[SourceFile]) -> None:
        error = None if done.cancelled() else done.exception()
        if error is not None:
            failed.append(error)

    with (
        ThreadPoolExecutor(COMMIT_THREADS) as committer,
        ThreadPoolExecutor(max_workers=threads) as pool,
    ):
        worker = _Worker(
            client, cache, bucket, stats, committer, threading.Semaphore(BACKLOG * threads)
        )
        pending = [pool.submit(worker.some, batch) for batch in work]
        reported = time.monotonic()
        try:
            for future in as_completed(pending):  # one waiter per future, not one per wait
                for rel, got in future.result():
                    if isinstance(got, SourceFile):
                        files[rel] = got
                    else:
                        got.add_done_callback(_note_failure)
                        committing.append((rel, got))
                if failed:  # a commit failed (a full claim, say): stop at once, as before
                    raise failed[0]
                if time.monotonic() - reported >= PROGRESS_SECONDS:
                    reported = time.monotonic()
                    _progress(uri, stats, stats.fetched_files + stats.cached_files)
                    if on_progress is not None:
                        on_progress(stats)
            for rel, got in committing:
                files[rel] = got.result()
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
