"""Version ledger rules: sequential, idempotent per uid, never reused, bases must be verified."""

from __future__ import annotations

from retrainer_operator.versions import (
    Allocation,
    allocate_in,
    find_in,
    mark_verified_in,
    resolve_base_in,
)


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


def test_ledger_values_are_all_strings_as_configmaps_require() -> None:
    data, _ = allocate_in({}, "uid-a", "run-a", None)
    data = mark_verified_in(data, 1, "a")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())
