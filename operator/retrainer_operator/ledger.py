"""The ledger of one model line, as data: pure functions over the flat string map kept in a
ModelLine's `status.ledger` (versions.py reads and writes it on the cluster).

The map (all values strings, kept small):

- `next`: the next number to hand out;
- `uid.<uid>`: the version given to the RetrainJob with that uid (so a restart finds it again);
- `v.<N>`: JSON `{"name", "uid", "base", "state"}`, state `allocated` then `verified`;
- `verified`: after compaction, the verified versions whose entries were folded away, as
  ranges (`1-40,42,45-900`).

An object holds at most ~1.5 MiB in etcd, and each version costs ~250 bytes, so every write
whose data passes COMPACT_THRESHOLD (128 KiB) is compacted first (`compact_in`): `next`
stays; the entries of the newest KEEP_RECENT versions and of every RetrainJob that still exists
and is not finished stay whole; the other verified versions become numbers in `verified`; the
other entries (versions whose RetrainJob failed or was deleted) are dropped. So `find_in`
answers for every RetrainJob that can still ask, `latest` and `N` resolve exactly as before,
and numbers are still never reused. The data then stays near KEEP_RECENT entries plus the
ranges (a few bytes per failed version), whatever the number of versions.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
from collections.abc import Collection, Mapping
from typing import Any

from retrainer_contract import versions as contract_versions

__all__ = [
    "COMPACT_THRESHOLD",
    "CONFIGMAP_LIMIT",
    "KEEP_RECENT",
    "LISTED_VERSIONS",
    "Allocation",
    "allocate_in",
    "compact_in",
    "data_of",
    "evidence",
    "find_in",
    "ledger_size",
    "mark_verified_in",
    "resolve_base_in",
    "seed_in",
    "summary_of",
]

# The ledger's budget inside the ModelLine (etcd refuses objects past ~1.5 MiB; the rest of the
# object, the spec and the readable status, stays far below the remainder).
CONFIGMAP_LIMIT = 1024 * 1024
# A write whose data passes this is compacted first: an eighth of the limit, so a compaction
# is rare (about every 400 versions), a ledger full of unfinished RetrainJobs still fits, and
# the whole ModelLine status (the ledger JSON-encoded, its ranges, the upkeep's fields) stays
# under 256 KiB with 10,000 versions in the line.
COMPACT_THRESHOLD = 128 * 1024
# The newest versions whose entries compaction always keeps whole, whatever the cluster says:
# a version allocated while compaction read the RetrainJobs is among them.
KEEP_RECENT = 100
# The key of the compacted verified versions.
VERIFIED_KEY = "verified"


@dataclasses.dataclass(frozen=True)
class Allocation:
    """The version a RetrainJob got, and the base version it resolved at that moment."""

    version: int
    base_version: int | None = None


def _entry(data: Mapping[str, str], version: int) -> dict[str, Any]:
    raw = data.get(f"v.{version}")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _version_key(key: str) -> int | None:
    if key.startswith("v.") and key[2:].isdigit():
        return int(key[2:])
    return None


parse_ranges = contract_versions.parse_ranges
format_ranges = contract_versions.format_ranges
_ranges_text = contract_versions.ranges_text


def _in_ranges(ranges: list[tuple[int, int]], version: int) -> bool:
    index = bisect.bisect_right(ranges, (version, float("inf"))) - 1
    return index >= 0 and ranges[index][0] <= version <= ranges[index][1]


def _compacted_verified(data: Mapping[str, str]) -> list[tuple[int, int]]:
    return parse_ranges(data.get(VERIFIED_KEY, ""))


def ledger_size(data: Mapping[str, str]) -> int:
    """Bytes the apiserver counts against the ConfigMap limit (keys plus values)."""
    return len("".join(data).encode()) + len("".join(data.values()).encode())


def find_in(data: Mapping[str, str], uid: str) -> Allocation | None:
    """The allocation recorded for `uid`, if any."""
    raw = data.get(f"uid.{uid}")
    if not raw:
        return None
    version = int(raw)
    base = _entry(data, version).get("base")
    return Allocation(version, int(base) if base is not None else None)


def allocate_in(
    data: Mapping[str, str], uid: str, name: str, base_version: int | None, floor: int = 1
) -> tuple[dict[str, str], Allocation]:
    """The new ledger data and the allocation for `uid` (the existing one if already there).

    `floor` is the lowest number that may be handed out (one above the highest version with
    evidence, when the ledger had to be recovered)."""
    existing = find_in(data, uid)
    if existing is not None:
        return dict(data), existing
    new = dict(data)
    version = max(int(new.get("next", "1")), floor, 1)
    new["next"] = str(version + 1)
    new[f"uid.{uid}"] = str(version)
    new[f"v.{version}"] = json.dumps(
        {"name": name, "uid": uid, "base": base_version, "state": "allocated"}, sort_keys=True
    )
    return new, Allocation(version, base_version)


def mark_verified_in(data: Mapping[str, str], version: int, sha256: str) -> dict[str, str]:
    """The ledger with version `version` marked verified (a valid base from now on)."""
    new = dict(data)
    if f"v.{version}" not in new and _in_ranges(_compacted_verified(new), version):
        return new  # verified already, and compacted since
    entry = _entry(new, version)
    entry.update({"state": "verified", "sha256": sha256})
    new[f"v.{version}"] = json.dumps(entry, sort_keys=True)
    return new


def _entry_evidence(data: Mapping[str, str]) -> list[tuple[int, bool]]:
    found = []
    for key in data:
        number = _version_key(key)
        if number is not None:
            found.append((number, _entry(data, number).get("state") == "verified"))
    return found


def evidence(data: Mapping[str, str]) -> list[tuple[int, bool]]:
    """(version, verified) for every version the ledger records: each entry, and each number
    of the compacted `verified` ranges (compaction keeps no entry of an unverified version
    whose RetrainJob is gone, so those are not evidence any more; `next` still counts them)."""
    found: dict[int, bool] = {}
    for first, last in _compacted_verified(data):
        found.update(dict.fromkeys(range(first, last + 1), True))
    for number, verified in _entry_evidence(data):
        found[number] = found.get(number, False) or verified
    return sorted(found.items())


def resolve_base_in(data: Mapping[str, str], requested: str) -> int | None:
    """`latest` -> the newest verified version; `"3"` -> 3 when verified; else None."""
    # The contract's rule, on the evidence that can change its answer: the entries, the top of
    # each compacted range, and the requested number if a range holds it (not every number).
    ranges = _compacted_verified(data)
    found = _entry_evidence(data) + [(last, True) for _, last in ranges]
    if requested.isdigit() and _in_ranges(ranges, int(requested)):
        found.append((int(requested), True))
    return contract_versions.resolve(requested, found)


def compact_in(
    data: Mapping[str, str],
    live: Collection[str] | None = None,
    *,
    threshold: int = COMPACT_THRESHOLD,
    keep_recent: int = KEEP_RECENT,
) -> dict[str, str]:
    """The ledger, compacted when it passes `threshold` bytes (else unchanged).

    `live`: the uids of the RetrainJobs that exist and are not finished (None: unknown). Kept
    whole: `next`, the newest `keep_recent` versions, the versions of `live` uids, and, when
    `live` is unknown, every version not verified (it may still be running). Every other
    verified version becomes a number in `verified`; every other entry is dropped (its
    RetrainJob failed or is gone: nothing will ask for it again). Pure: the same input always
    gives the same ledger, and find_in, allocate_in, mark_verified_in, resolve_base_in and
    evidence answer on it as on the whole ledger, for every uid that can still ask.
    """
    if ledger_size(data) <= threshold:
        return dict(data)
    uids_of: dict[int, set[str]] = {}
    for key, value in data.items():
        if key.startswith("uid.") and value.strip().isdigit():
            uids_of.setdefault(int(value), set()).add(key[4:])
    versions = {v for v in (_version_key(k) for k in data) if v is not None} | set(uids_of)
    highest = max(versions, default=0)
    try:
        next_version = max(int(data.get("next", "1")), highest + 1)
    except ValueError:
        next_version = highest + 1
    verified: set[int] = set()
    alive = None if live is None else frozenset(live)
    keep: set[int] = set()
    for version in versions:
        entry = _entry(data, version)
        uids = uids_of.get(version, set()) | ({str(entry["uid"])} if entry.get("uid") else set())
        is_verified = entry.get("state") == "verified"
        if version >= next_version - keep_recent:
            keep.add(version)  # recent: maybe allocated after `live` was read
        elif (not is_verified) if alive is None else bool(uids & alive):
            keep.add(version)  # its RetrainJob may still ask (find, mark_verified)
        elif is_verified:
            verified.add(version)
    new = {
        key: value
        for key, value in data.items()
        if not key.startswith("uid.") and _version_key(key) is None and key != VERIFIED_KEY
    }
    new["next"] = str(next_version)
    for key, value in data.items():
        number = _version_key(key)
        if number is None and key.startswith("uid.") and value.strip().isdigit():
            number = int(value)
        if number is not None and number in keep:
            new[key] = value
    ranges = parse_ranges(f"{data.get(VERIFIED_KEY, '')},{format_ranges(verified)}")
    if ranges:
        new[VERIFIED_KEY] = _ranges_text(ranges)
    return new


def seed_in(
    data: Mapping[str, str], highest: int, verified: Mapping[int, tuple[str, str]]
) -> dict[str, str]:
    """A ledger rebuilt from evidence: `next` above `highest`, and an entry for each version
    known verified (version -> (production sha256, RetrainJob name)); unchanged when `data`
    is a ledger already (another writer rebuilt it first)."""
    if "next" in data:
        return dict(data)
    new = dict(data)
    new["next"] = str(max(highest, *verified, 0) + 1)
    for version, (sha256, name) in sorted(verified.items()):
        new[f"v.{version}"] = json.dumps(
            {"name": name, "sha256": sha256, "state": "verified"}, sort_keys=True
        )
    return new


# The newest versions listed whole in status.versions (every verified one is in
# status.verifiedVersions, and in the ledger's entries or ranges).
LISTED_VERSIONS = 50


def summary_of(data: Mapping[str, str]) -> dict[str, Any]:
    """The status fields people read, from the ledger alone: the highest version handed out,
    the newest verified one, every verified one as ranges, and the newest entries."""
    found = evidence(data)
    verified = [number for number, ok in found if ok]
    try:
        latest = max(int(data.get("next", "1")) - 1, max((n for n, _ in found), default=0))
    except ValueError:
        latest = max((n for n, _ in found), default=0)
    listed = []
    for number, ok in sorted(found, reverse=True)[:LISTED_VERSIONS]:
        entry = _entry(data, number)
        row: dict[str, Any] = {"version": number, "state": "verified" if ok else "allocated"}
        if entry.get("name"):
            row["retrainJob"] = str(entry["name"])
        if entry.get("sha256"):
            row["sha256"] = str(entry["sha256"])
        listed.append(row)
    summary: dict[str, Any] = {
        "latestVersion": latest,
        "verifiedVersions": format_ranges(verified),
        "versions": listed,
    }
    if verified:
        summary["latestVerified"] = max(verified)
    return summary


def data_of(line: Mapping[str, Any] | None) -> dict[str, str]:
    """The ledger map of a ModelLine object ({} when it has none)."""
    ledger = ((line or {}).get("status") or {}).get("ledger") or {}
    return {str(key): str(value) for key, value in ledger.items()}
