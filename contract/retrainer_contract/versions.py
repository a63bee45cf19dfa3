"""The one answer to "which is the latest verified version of a model line".

The operator asks its ledger, the trainer and the CLI look at the claim; each turns what it
has into `(version, verified)` evidence and asks `latest_verified` here, so the rule ("the
highest version whose copies were verified") is written once.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["LATEST", "latest_verified", "resolve"]

# spec.baseModel.version's word for "the newest verified version".
LATEST = "latest"


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
