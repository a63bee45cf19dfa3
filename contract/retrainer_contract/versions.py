"""The one answer to "which is the latest verified version of a model line".

The operator asks its ledger, the trainer and the CLI look at the claim; each turns what it
has into `(version, verified)` evidence and asks `latest_verified` here, so the rule ("the
highest version whose copies were verified") is written once. Sets of version numbers travel
as ranges ("1-40,42": the ModelLine's status.verifiedVersions), read and written here.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CHAMPION",
    "LATEST",
    "expand_ranges",
    "format_ranges",
    "latest_verified",
    "parse_ranges",
    "ranges_text",
    "resolve",
]

# spec.baseModel.version's word for "the newest verified version".
LATEST = "latest"
# spec.baseModel.version: champion: the version the ModelLine's status.champion names.
CHAMPION = "champion"


def latest_verified(evidence: Iterable[tuple[int, bool]]) -> int | None:
    """The highest version marked verified in `evidence`, or None when there is none."""
    return max((version for version, verified in evidence if verified), default=None)


def resolve(requested: str, evidence: Iterable[tuple[int, bool]]) -> int | None:
    """spec.baseModel.version against `evidence`: `latest` -> the newest verified version,
    `"3"` -> 3 when it is verified; None when there is no such verified version."""
    listed = list(evidence)
    if requested == LATEST:
        return latest_verified(listed)
    version = int(requested)
    return version if (version, True) in listed else None


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """`"1-40,42"` -> `[(1, 40), (42, 42)]`, sorted and merged; malformed parts are skipped."""
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or not (high or low).isdigit():
            continue
        first, last = int(low), int(high or low)
        if first <= last:
            ranges.append((first, last))
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for first, last in ranges:
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def ranges_text(ranges: Iterable[tuple[int, int]]) -> str:
    """`[(1, 3), (5, 5)]` -> `"1-3,5"`."""
    return ",".join(str(first) if first == last else f"{first}-{last}" for first, last in ranges)


def format_ranges(numbers: Iterable[int]) -> str:
    """`[1, 2, 3, 5]` -> `"1-3,5"`: the compact form of a set of version numbers."""
    return ranges_text(parse_ranges(",".join(str(n) for n in set(numbers))))


def expand_ranges(text: str) -> list[int]:
    """`"1-3,5"` -> `[1, 2, 3, 5]`."""
    return [n for first, last in parse_ranges(text) for n in range(first, last + 1)]
