"""Version ledger rules: sequential, idempotent per uid, never reused, bases must be verified."""

from __future__ import annotations

import random
from typing import Any

import pytest
from lines_fake import NO_EVIDENCE, FakeLines
from retrainer_contract.versions import format_ranges, parse_ranges
from retrainer_operator import versions
from retrainer_operator.ledger import (
    COMPACT_THRESHOLD,
    CONFIGMAP_LIMIT,
    KEEP_RECENT,
    Allocation,
    allocate_in,
    compact_in,
    evidence,
    find_in,
    ledger_size,
    mark_verified_in,
    resolve_base_in,
)
from retrainer_operator.versions import allocate, find, mark_verified, resolve_base


def test_versions_are_handed_out_in_order_starting_at_one() -> None:
    data: dict[str, str] = {}
    got = []
    for i in range(3):
        data, allocation = allocate_in(data, f"uid-{i}", f"run-{i}", None)
        got.append(allocation.version)
    assert got == [1, 2, 3]
    assert data["next"] == "4"


def test_the_same_uid_gets_the_same_version_again() -> None:
    data, first = allocate_in({}, "uid-a", "run-a", None)
    again_data, again = allocate_in(data, "uid-a", "run-a", None)
    assert again == first == Allocation(1, None)
    assert again_data == data
    assert find_in(data, "uid-a") == first
    assert find_in(data, "uid-b") is None


def test_the_base_version_is_remembered_with_the_allocation() -> None:
    data, _ = allocate_in({}, "uid-a", "run-a", None)
    data = mark_verified_in(data, 1, "abc")
    data, second = allocate_in(data, "uid-b", "run-b", 1)
    assert second == Allocation(2, 1)
    assert find_in(data, "uid-b") == Allocation(2, 1)


def test_numbers_are_never_reused_even_when_entries_disappear() -> None:
    data, _ = allocate_in({}, "uid-a", "run-a", None)
    data, _ = allocate_in(data, "uid-b", "run-b", None)
    # Even if someone removes a version's entries, `next` keeps counting.
    data = {k: v for k, v in data.items() if not k.endswith("uid-b") and k != "v.2"}
    data, third = allocate_in(data, "uid-c", "run-c", None)
    assert third.version == 3


def test_latest_is_the_newest_verified_version() -> None:
    data: dict[str, str] = {}
    for i in range(4):
        data, _ = allocate_in(data, f"uid-{i}", f"run-{i}", None)
    assert resolve_base_in(data, "latest") is None
    data = mark_verified_in(data, 1, "a")
    data = mark_verified_in(data, 3, "c")
    assert resolve_base_in(data, "latest") == 3


def test_a_numbered_base_must_exist_and_be_verified() -> None:
    data, _ = allocate_in({}, "uid-a", "run-a", None)
    data, _ = allocate_in(data, "uid-b", "run-b", None)
    data = mark_verified_in(data, 1, "a")
    assert resolve_base_in(data, "1") == 1
    assert resolve_base_in(data, "2") is None  # allocated, not verified
    assert resolve_base_in(data, "9") is None  # never allocated


def test_ledger_values_are_all_strings_as_the_status_schema_requires() -> None:
    data, _ = allocate_in({}, "uid-a", "run-a", None)
    data = mark_verified_in(data, 1, "a")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())


# ---- compaction: the ledger never outgrows its ConfigMap ----------------------------------


def test_ranges_round_trip_and_merge() -> None:
    assert format_ranges([5, 1, 2, 3, 42, 45, 46]) == "1-3,5,42,45-46"
    assert parse_ranges("45-46,1-3,5,42") == [(1, 3), (5, 5), (42, 42), (45, 46)]
    assert parse_ranges("1-3,4-6,9,x,7-2,") == [(1, 6), (9, 9)]
    assert format_ranges([]) == ""


def test_a_small_ledger_is_left_alone() -> None:
    data, _ = allocate_in({}, "uid-a", "run-a", None)
    assert compact_in(data) == data


def verified_ledger(count: int) -> dict[str, str]:
    data: dict[str, str] = {}
    for i in range(1, count + 1):
        data, _ = allocate_in(data, f"uid-{i}", f"run-{i}", i - 1 or None)
        data = mark_verified_in(data, i, f"sha-{i}")
    return data


def test_compaction_folds_old_verified_versions_into_ranges_and_keeps_the_recent() -> None:
    data = verified_ledger(300)
    data, _ = allocate_in(data, "uid-failed", "failed", None)  # 301, never verified
    small = compact_in(data, threshold=0, keep_recent=10)
    assert small["next"] == "302"
    assert small["verified"] == "1-291"
    assert sorted(k for k in small if k.startswith("v.")) == sorted(
        f"v.{n}" for n in range(292, 302)
    )
    assert find_in(small, "uid-300") == Allocation(300, 299)
    assert find_in(small, "uid-failed") == Allocation(301, None)  # recent: kept
    assert find_in(small, "uid-5") is None  # finished long ago: nothing asks any more
    for requested in ["latest", "1", "291", "292", "300", "301", "302", "0"]:
        assert resolve_base_in(small, requested) == resolve_base_in(data, requested)
    assert evidence(small) == evidence(data)
    assert ledger_size(small) < ledger_size(data) / 10


def test_unknown_liveness_keeps_every_unverified_entry() -> None:
    data = verified_ledger(50)
    data, _ = allocate_in(data, "uid-old-running", "running", None)  # 51
    data = verified_ledger_after(data, 52, 100)
    small = compact_in(data, threshold=0, keep_recent=5)
    assert find_in(small, "uid-old-running") == Allocation(51, None)
    assert small["verified"] == "1-50,52-95"
    # Known liveness drops the entries of RetrainJobs that are gone or finished.
    assert find_in(compact_in(data, set(), threshold=0, keep_recent=5), "uid-old-running") is None
    kept = compact_in(data, {"uid-old-running", "uid-7"}, threshold=0, keep_recent=5)
    assert find_in(kept, "uid-old-running") == Allocation(51, None)
    assert find_in(kept, "uid-7") == Allocation(7, 6)
    assert kept["verified"] == "1-6,8-50,52-95"


def verified_ledger_after(data: dict[str, str], first: int, last: int) -> dict[str, str]:
    for i in range(first, last + 1):
        data, _ = allocate_in(data, f"uid-{i}", f"run-{i}", None)
        data = mark_verified_in(data, i, f"sha-{i}")
    return data


def test_compacted_ledgers_keep_allocating_and_verifying() -> None:
    data = compact_in(verified_ledger(200), set(), threshold=0, keep_recent=3)
    data, new = allocate_in(data, "uid-new", "new", 200)
    assert new == Allocation(201, 200)
    assert mark_verified_in(data, 150, "again") == data  # verified and compacted: no change
    data = mark_verified_in(data, 201, "sha-201")
    assert resolve_base_in(data, "latest") == 201
    again = compact_in(data, set(), threshold=0, keep_recent=3)
    assert again["verified"] == "1-198"
    assert compact_in(again, set(), threshold=0, keep_recent=3) == again  # stable


def test_compaction_is_applied_on_writes_and_reads_which_retrainjobs_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(versions, "COMPACT_THRESHOLD", 16 * 1024)
    monkeypatch.setattr(versions, "KEEP_RECENT", 10)

    cluster = FakeLines()
    cluster.retrainjobs = [
        {"metadata": {"uid": "uid-3"}, "status": {}},
        {
            "metadata": {"uid": "uid-4"},
            "status": {"conditions": [{"type": "Failed", "status": "True"}]},
        },
    ]
    for i in range(1, 500):
        allocate(cluster, "team", "shapes", f"uid-{i}", f"run-{i}", None, NO_EVIDENCE)
        if i not in (3, 4):
            mark_verified(cluster, "team", "shapes", i, "0" * 64)
        assert ledger_size(cluster.ledger("team", "shapes")) <= 16 * 1024
    assert 1 <= cluster.lists < 20  # once per compaction, not per write
    assert find(cluster, "team", "shapes", "uid-3") == Allocation(3, None)  # still running
    assert find(cluster, "team", "shapes", "uid-4") is None  # failed: dropped
    assert resolve_base(cluster, "team", "shapes", "latest") == 499
    assert resolve_base(cluster, "team", "shapes", "3") is None
    assert resolve_base(cluster, "team", "shapes", "5") == 5


def test_twenty_thousand_versions_stay_small_and_answer_like_the_whole_ledger() -> None:
    """Property: with random failures and RetrainJobs that run for a while (a few for the
    whole time), every answer on the compacted ledger matches a reference that forgets
    nothing, for every uid that can still ask, and the data stays far below 1 MiB."""
    rng = random.Random(20_000)
    data: dict[str, str] = {}
    reference: dict[str, Allocation] = {}  # uid -> allocation, never compacted
    verified: set[int] = set()
    running: dict[str, int] = {}  # uid -> version: RetrainJobs that exist and are unfinished
    largest = 0
    latest: int | None = None

    def write(new: dict[str, str]) -> dict[str, str]:
        nonlocal largest
        new = compact_in(new, set(running))
        largest = max(largest, ledger_size(new))
        return new

    for i in range(1, 20_001):
        uid = f"{i:08d}-0000-4000-8000-{rng.randrange(16**12):012x}"  # uid-sized keys
        base = latest if latest is not None and rng.random() < 0.7 else None
        data, allocation = allocate_in(data, uid, f"shapes-run-{i}", base)
        data = write(data)
        reference[uid] = allocation
        assert allocation == Allocation(i, base)
        running[uid] = i
        # Finish some of the running ones: most succeed, some fail, a few run on.
        for other in list(running):
            if other.startswith("00000001") or other.startswith("00000777"):
                continue  # e.g. suspended in a Kueue queue for the whole run
            if rng.random() < 0.3:
                version = running.pop(other)
                if rng.random() < 0.9:
                    data = write(mark_verified_in(data, version, "0" * 64))
                    verified.add(version)
                    latest = max(version, latest or 0)
        if i % 2_500 == 0 or i == 20_000:
            assert data["next"] == str(i + 1)
            assert resolve_base_in(data, "latest") == max(verified)
            assert {v for v, ok in evidence(data) if ok} == verified
            for number in [*rng.sample(range(1, i + 2), 100), 1, 777, i]:
                expected = number if number in verified else None
                assert resolve_base_in(data, str(number)) == expected
            for other in running:
                assert find_in(data, other) == reference[other]
            recent = [u for u, a in reference.items() if a.version > i - KEEP_RECENT]
            for other in recent:
                assert find_in(data, other) == reference[other]
    assert largest <= COMPACT_THRESHOLD < CONFIGMAP_LIMIT
    assert find_in(data, next(u for u in reference if u.startswith("00000001"))) == Allocation(
        1, None
    )
    # The next allocation continues the sequence, as on the whole ledger.
    _, allocation = allocate_in(data, "uid-next", "next", None)
    assert allocation.version == 20_001


def test_compacted_and_whole_ledgers_give_the_same_answers_step_by_step() -> None:
    """The same operations on the whole ledger and on one compacted at every write (a small
    threshold, so it compacts often): every question a RetrainJob can still ask gets the same
    answer from both."""
    rng = random.Random(7)
    whole: dict[str, str] = {}
    small: dict[str, str] = {}
    running: set[str] = set()
    version_of: dict[str, int] = {}
    compactions = 0

    def compact(data: dict[str, str]) -> dict[str, str]:
        nonlocal compactions
        new = compact_in(data, running, threshold=8 * 1024, keep_recent=10)
        compactions += new != data
        return new

    for i in range(1, 1_201):
        uid = f"uid-{i}"
        requested = rng.choice(["latest", str(rng.randint(1, i))])
        base = resolve_base_in(small, requested)
        if i % 5 == 0:
            assert resolve_base_in(whole, requested) == base
        whole, expected = allocate_in(whole, uid, f"run-{i}", base)
        small, got = allocate_in(small, uid, f"run-{i}", base)
        small = compact(small)
        assert got == expected
        running.add(uid)
        version_of[uid] = expected.version
        for other in sorted(running):
            assert find_in(small, other) == find_in(whole, other)
            roll = rng.random()
            if roll < 0.25:  # succeeded and verified
                whole = mark_verified_in(whole, version_of[other], "sha")
                small = compact(mark_verified_in(small, version_of[other], "sha"))
                running.discard(other)
            elif roll < 0.3:  # failed (or deleted)
                running.discard(other)
    assert compactions > 10
    assert ledger_size(small) < ledger_size(whole) / 4
    assert small["next"] == whole["next"]
    assert [v for v, ok in evidence(small) if ok] == [v for v, ok in evidence(whole) if ok]
    for number in [0, *rng.sample(range(1, 1_150), 150), *range(1_150, 1_202)]:
        assert resolve_base_in(small, str(number)) == resolve_base_in(whole, str(number))


def test_every_line_keeps_its_own_sequence_in_its_own_modelline() -> None:
    store = FakeLines()
    first = versions.allocate(store, "team-a", "shapes", "u1", "a", None, NO_EVIDENCE)
    other = versions.allocate(store, "team-b", "shapes", "u2", "b", None, NO_EVIDENCE)
    assert first.version == other.version == 1  # two lines, two sequences
    assert set(store.lines) == {("team-a", "shapes"), ("team-b", "shapes")}
    assert store.lines[("team-a", "shapes")]["spec"] == {}  # a bare line, created for the run
    versions.mark_verified(store, "team-a", "shapes", 1, "sha")
    assert versions.resolve_base(store, "team-a", "shapes", "latest") == 1
    assert versions.resolve_base(store, "team-b", "shapes", "latest") is None
    assert versions.find(store, "team-a", "shapes", "u1") == first


def test_the_status_people_read_is_derived_from_the_ledger_on_every_write() -> None:
    store = FakeLines()
    for i in (1, 2, 3):
        versions.allocate(store, "team", "shapes", f"u{i}", f"run-{i}", None, NO_EVIDENCE)
    versions.mark_verified(store, "team", "shapes", 1, "a" * 64)
    versions.mark_verified(store, "team", "shapes", 3, "c" * 64)
    status = store.lines[("team", "shapes")]["status"]
    assert status["latestVersion"] == 3
    assert status["latestVerified"] == 3
    assert status["verifiedVersions"] == "1,3"
    assert [(v["version"], v["state"], v.get("retrainJob")) for v in status["versions"]] == [
        (3, "verified", "run-3"),
        (2, "allocated", "run-2"),
        (1, "verified", "run-1"),
    ]


def test_champion_resolves_to_the_version_the_line_names_when_it_is_verified() -> None:
    store = FakeLines()
    for i in (1, 2):
        versions.allocate(store, "team", "shapes", f"u{i}", f"run-{i}", None, NO_EVIDENCE)
    versions.mark_verified(store, "team", "shapes", 1, "a" * 64)
    assert versions.resolve_base(store, "team", "shapes", "champion") is None  # none named
    store.lines[("team", "shapes")]["status"]["champion"] = {"version": 2}
    assert versions.resolve_base(store, "team", "shapes", "champion") is None  # not verified
    store.lines[("team", "shapes")]["status"]["champion"] = {"version": 1}
    assert versions.resolve_base(store, "team", "shapes", "champion") == 1


def test_a_concurrent_write_is_retried_never_lost() -> None:
    store = FakeLines()
    versions.allocate(store, "team", "shapes", "u1", "run-1", None, NO_EVIDENCE)
    real_read = store.read_modelline
    raced = {"done": False}

    def read_then_race(namespace: str, name: str) -> dict[str, Any] | None:
        seen = real_read(namespace, name)
        if not raced["done"]:
            raced["done"] = True  # another allocator writes between our read and our write
            versions.allocate(store, "team", "shapes", "u2", "run-2", None, NO_EVIDENCE)
        return seen

    store.read_modelline = read_then_race  # type: ignore[method-assign]
    third = versions.allocate(store, "team", "shapes", "u3", "run-3", None, NO_EVIDENCE)
    assert third.version == 3
    assert versions.find(store, "team", "shapes", "u2") == Allocation(2, None)
