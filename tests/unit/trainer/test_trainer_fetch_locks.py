"""A fetch into the dataset cache without a lock file per object: the part file is the lock,
so a miss leaves exactly its blob and its key record; two fetchers of one object (threads here,
trainers on a shared claim) download it once; a damaged partial download is fetched anew in
the same part; a folder's small objects are committed by committing threads, each as a miss
alone would be. A stand-in object store counts the requests."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrainer_trainer import datacache, fetch
from retrainer_trainer.datacache import Cache


class Response:
    def __init__(self, data: bytes, delay: float) -> None:
        self.data, self.delay = data, delay

    def stream(self, size: int) -> Iterator[bytes]:
        time.sleep(self.delay)  # a far store: the other fetcher arrives meanwhile
        for start in range(0, len(self.data), size):
            yield self.data[start : start + size]

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class Store:
    """get_object as minio has it, for one object; each request counted."""

    def __init__(self, data: bytes, delay: float = 0.0) -> None:
        self.data, self.delay = data, delay
        self.requests: list[int] = []
        self.etag = hashlib.md5(data, usedforsecurity=False).hexdigest()

    def get_object(
        self, bucket: str, key: str, offset: int = 0, request_headers: object = None
    ) -> Response:
        self.requests.append(offset)
        return Response(self.data[offset:], self.delay)


def fetch_one(cache: Cache, store: Store) -> fetch.SourceFile:
    worker = fetch._Worker(store, cache, "bucket", fetch.Fetched())
    return worker("images/a.bin", "ds/images/a.bin", store.etag, len(store.data), missing=True)


def test_a_miss_leaves_its_blob_and_key_record_and_nothing_in_tmp(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=10**9)
    store = Store(os.urandom(3 * fetch.CHUNK + 5))

    got = fetch_one(cache, store)

    sha256 = hashlib.sha256(store.data).hexdigest()
    assert (got.sha256, got.size) == (sha256, len(store.data))
    assert Path(got.path).read_bytes() == store.data
    assert Path(got.path).stat().st_mode & 0o777 == 0o444
    key_id = cache.key_id("bucket", "ds/images/a.bin", store.etag, len(store.data))
    entry = cache.lookup(key_id)
    assert entry is not None and (entry.sha256, entry.size) == (sha256, len(store.data))
    assert list(cache.tmp.iterdir()) == []  # no part, no lock file left behind
    assert store.requests == [0]


def test_two_fetchers_of_one_object_download_it_once(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=10**9)
    store = Store(os.urandom(fetch.CHUNK + 1), delay=0.2)
    got: list[fetch.SourceFile] = []
    fetchers = [
        threading.Thread(target=lambda: got.append(fetch_one(cache, store))) for _ in range(2)
    ]

    for fetcher in fetchers:
        fetcher.start()
    for fetcher in fetchers:
        fetcher.join()

    assert store.requests == [0], "the second fetcher waited on the part and found the blob"
    assert {(g.path, g.sha256, g.size) for g in got} == {(got[0].path, got[0].sha256, got[0].size)}
    assert list(cache.tmp.iterdir()) == []


def test_a_damaged_partial_download_is_fetched_again_in_the_same_part(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=10**9)
    store = Store(os.urandom(2 * fetch.CHUNK + 7))
    key_id = cache.key_id("bucket", "ds/images/a.bin", store.etag, len(store.data))
    cache.part(key_id).write_bytes(b"\0" * fetch.CHUNK)  # what a dead pod left: wrong bytes
    stats = fetch.Fetched()
    worker = fetch._Worker(store, cache, "bucket", stats)

    got = worker("images/a.bin", "ds/images/a.bin", store.etag, len(store.data))

    assert Path(got.path).read_bytes() == store.data
    assert store.requests == [fetch.CHUNK, 0], "resumed, found damaged, fetched whole"
    assert stats.retries == 1 and not cache.part(key_id).exists()


def test_a_part_opened_for_an_object_already_in_the_cache_is_removed(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=10**9)
    store = Store(b"pixels")
    fetch_one(cache, store)

    again = fetch_one(cache, store)  # planned as a miss, found in the cache under the lock

    assert Path(again.path).read_bytes() == b"pixels"
    assert store.requests == [0] and list(cache.tmp.iterdir()) == []


@dataclass
class Listed:
    object_name: str
    etag: str
    size: int
    is_dir: bool = False


class Folder:
    """A folder of objects (list_objects and get_object as minio has them)."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.requests: list[str] = []

    def list_objects(self, bucket: str, prefix: str, recursive: bool) -> list[Listed]:
        return [
            Listed(name, hashlib.md5(data, usedforsecurity=False).hexdigest(), len(data))
            for name, data in sorted(self.objects.items())
            if name.startswith(prefix)
        ]

    def get_object(
        self, bucket: str, key: str, offset: int = 0, request_headers: object = None
    ) -> Response:
        self.requests.append(key)
        return Response(self.objects[key][offset:], 0.0)


def test_a_folders_small_objects_are_committed_whole_and_each_fetched_once(
    tmp_path: Path,
) -> None:
    objects = {f"ds/labels/{i:03d}.txt": f"{i % 3} 0.5 0.5 0.2 0.2\n".encode() for i in range(40)}
    objects["ds/big.bin"] = os.urandom(fetch.SMALL + 1)  # streamed into its part, as before
    store = Folder(objects)
    cache = Cache(tmp_path, max_bytes=10**9)

    source, stats = fetch.fetch_prefix(
        store, "s3://bucket/ds", cache, concurrency=3, field_name="test"
    )

    assert sorted(store.requests) == sorted(objects)
    assert (stats.fetched_files, stats.cached_files) == (len(objects), 0)
    for name, data in objects.items():
        got = source.files[name.removeprefix("ds/")]
        assert Path(got.path).read_bytes() == data
        assert got.sha256 == hashlib.sha256(data).hexdigest()
    assert list(cache.tmp.iterdir()) == []

    again, cached = fetch.fetch_prefix(
        store, "s3://bucket/ds", cache, concurrency=3, field_name="test"
    )
    assert (cached.fetched_files, cached.cached_files) == (0, len(objects))
    assert {r: f.sha256 for r, f in again.files.items()} == {
        r: f.sha256 for r, f in source.files.items()
    }


def test_a_fetcher_arriving_as_the_part_becomes_the_blob_finds_it_recorded(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The other trainer opens the part's name just after it moved into blobs/: it makes a new
    part, locks it at once, and must find the key record then (written before the move), or
    it downloads the object a second time."""
    cache = Cache(tmp_path, max_bytes=10**9)
    store = Store(os.urandom(fetch.CHUNK + 1))
    late: list[fetch.SourceFile] = []
    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        real(src, dst)
        if not late and str(src).endswith(".part"):  # the named point: the part is the blob
            late.append(fetch_one(cache, store))

    monkeypatch.setattr(datacache.os, "replace", replace)
    first = fetch_one(cache, store)

    assert store.requests == [0], "fetched once in all"
    assert late[0].sha256 == first.sha256 == hashlib.sha256(store.data).hexdigest()
    assert list(cache.tmp.iterdir()) == []  # the late fetcher's new part is gone too
