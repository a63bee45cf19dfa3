"""The dataset cache on the claim: blobs by content, a cap kept by evicting the least recently
used, never what a run uses nor a working tree a trainer holds."""

from __future__ import annotations

import errno
import hashlib
import os
import time
from pathlib import Path

import pytest
from retrainer_contract import layout
from retrainer_trainer import datacache, worktree
from retrainer_trainer.datacache import Cache


def put(cache: Cache, data: bytes, key: str, used_at: float | None = None) -> datacache.Entry:
    """A blob as fetch.py commits one: a complete part file, hashed, renamed in."""
    key_id = cache.key_id("bucket", key, '"etag"', len(data))
    part = cache.part(key_id)
    part.write_bytes(data)
    entry = cache.commit(part, key_id, hashlib.sha256(data).hexdigest(), len(data))
    if used_at is not None:
        cache.touch([entry.sha256])
        os.utime(entry.path.with_suffix(".used"), (used_at, used_at))
    return entry


def blob_names(cache: Cache) -> set[str]:
    return {p.name for p in cache.blobs.glob("*/*") if "." not in p.name}


def test_the_cache_lives_on_the_claim_and_a_key_finds_its_blob(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=10**6)
    entry = put(cache, b"pixels", "ds/images/train/a.jpg")
    assert cache.root == tmp_path / layout.DATASET_CACHE
    assert entry.path == cache.blob(hashlib.sha256(b"pixels").hexdigest())
    assert entry.path.read_bytes() == b"pixels" and entry.path.stat().st_mode & 0o777 == 0o444
    key_id = cache.key_id("bucket", "ds/images/train/a.jpg", '"etag"', 6)
    assert cache.lookup(key_id) == entry
    assert cache.lookup(cache.key_id("bucket", "ds/images/train/a.jpg", '"other"', 6)) is None


def test_a_blob_changed_on_the_claim_is_no_longer_intact(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=10**6)
    entry = put(cache, b"0123456789", "k")
    assert cache.intact(entry)
    os.chmod(entry.path, 0o644)
    entry.path.write_bytes(b"0123456780")  # same size, one byte differs
    assert not cache.intact(entry)
    cache.discard(entry)
    assert cache.lookup(cache.key_id("bucket", "k", '"etag"', 10)) is None


def test_the_cap_evicts_the_least_recently_used_blobs_first(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=250)
    a = put(cache, b"a" * 100, "a", used_at=1000)
    b = put(cache, b"b" * 100, "b", used_at=2000)
    c = put(cache, b"c" * 100, "c", used_at=3000)
    cache.touch([a.sha256])  # a used again now: b is the least recently used

    evicted = cache.evict(keep=set(), keep_trees=set())

    assert (evicted.blobs, evicted.bytes, evicted.total_after) == (1, 100, 200)
    assert blob_names(cache) == {a.sha256, c.sha256}
    assert not b.path.exists() and not b.path.with_suffix(".used").exists()


def test_eviction_never_removes_what_the_run_uses_and_stops_under_the_cap(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=150)
    old = put(cache, b"o" * 100, "old", used_at=1000)
    mid = put(cache, b"m" * 100, "mid", used_at=2000)
    new = put(cache, b"n" * 100, "new", used_at=3000)

    evicted = cache.evict(keep={old.sha256}, keep_trees=set())

    assert blob_names(cache) == {old.sha256}
    assert evicted.blobs == 2 and {mid.path.exists(), new.path.exists()} == {False}
    assert cache.evict(keep=set(), keep_trees=set()).blobs == 0, "under the cap: nothing to do"


def test_a_tree_a_trainer_holds_survives_eviction_and_an_unused_one_goes(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=10)
    put(cache, b"x" * 100, "x", used_at=1000)
    for name in ("held", "unused"):
        (cache.trees / name).mkdir()
        (cache.trees / name / worktree.MARKER).write_text("{}")
    holder = Cache(tmp_path, max_bytes=10)  # another trainer (its own lock descriptor)
    worktree.hold(holder, "held")
    try:
        evicted = cache.evict(keep=set(), keep_trees=set())
    finally:
        holder.close()

    assert (cache.trees / "held").is_dir() and not (cache.trees / "unused").exists()
    assert evicted.trees == 1 and evicted.blobs == 1


def test_where_the_claim_refuses_hardlinks_the_tree_gets_symlinks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source.jpg"
    source.write_bytes(b"jpeg")

    def refused(*_: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")  # fault point: os.link

    monkeypatch.setattr(datacache.os, "link", refused)
    assert datacache.link_or_copy(source, tmp_path / "tree" / "a.jpg") == "symlink"
    assert (tmp_path / "tree" / "a.jpg").resolve() == source.resolve()


def test_what_a_dead_trainer_left_in_tmp_is_swept_a_day_later(tmp_path: Path) -> None:
    cache = Cache(tmp_path, max_bytes=10**6)
    old_part, fresh_part = cache.tmp / "old.part", cache.tmp / "fresh.part"
    old_part.write_bytes(b"half")
    fresh_part.write_bytes(b"half")
    old_tree = cache.new_tmp("tree")
    long_ago = time.time() - datacache.STALE_TMP_SECONDS - 60
    for path in (old_part, old_tree):
        os.utime(path, (long_ago, long_ago))

    cache.evict(keep=set(), keep_trees=set())

    assert not old_part.exists() and not old_tree.exists() and fresh_part.exists()
