"""The upkeep of a model line's claim: what a scrub reports, what retention removes.

The operator starts both as Jobs that run the CLI in the operator image (claimjob.py):
`retrainer verify MODEL --all` (the scrub) and `retrainer retain MODEL N...` (retention). The
CLI writes its report as the pod's termination message and the operator parses it, so the
report shapes, their 4 KiB bound and the claim paths retention removes are written once, here.

Retention removes three things per version: the production copy, the quick-access copy and the
Ultralytics run folder (with best.pt, last.pt and the manifest). The metadata file stays, so
the claim still says the version existed; MLflow is never touched.

A line may hold 10,000 versions, and a report that outgrows the kubelet's 4 KiB is cut off,
unparseable, and the upkeep fails forever. So a report names versions as ranges ("1-40,42"),
cut at a whole range to a fixed share of the budget (`versionsOmitted` counts what was cut),
and lists problems or failures as a sample that fits (`omitted` counts the rest): every report
fits 4 KiB, whatever the number of versions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from retrainer_contract.documents import TERMINATION_LIMIT
from retrainer_contract.layout import VersionPaths
from retrainer_contract.versions import expand_ranges, parse_ranges, ranges_text

__all__ = [
    "CHANGED",
    "MISSING",
    "UNREADABLE",
    "VERSIONS_ENV",
    "bounded_ranges",
    "parse_retain_report",
    "parse_scrub_report",
    "problem",
    "problem_text",
    "retain_report",
    "retention_paths",
    "scrub_report",
]

# What is wrong with a copy a scrub checked: gone, different, or not readable right now (an
# outage or missing credentials: no evidence that the copy itself is bad).
MISSING = "missing"
CHANGED = "changed"
UNREADABLE = "unreadable"
# Room left under the kubelet's 4 KiB for the JSON around the lists.
_BUDGET = TERMINATION_LIMIT - 96
_WHAT_LIMIT = 160
# The share of a report's budget its version ranges may take; the sample gets the rest.
_RANGES_LIMIT = 1024
# The scrub Job's environment: the versions the operator's ledger says are verified and that
# retention has not removed, as ranges. The scrub checks them even when their production copy
# (or every claim copy) is gone: that absence is the damage it must report.
VERSIONS_ENV = "RETRAINER_SCRUB_VERSIONS"


def retention_paths(paths: VersionPaths) -> tuple[Path, ...]:
    """The claim copies of version N that retention removes (a file, a file, a folder)."""
    return (paths.production, paths.quick_access, paths.run_dir)


def problem(version: int, name: str, location: str, what: str, kind: str) -> dict[str, Any]:
    """One copy that did not verify: version, artifact name, location, what failed, kind."""
    return {"version": version, "name": name, "location": location, "what": what, "kind": kind}


def problem_text(entry: Mapping[str, Any]) -> str:
    """The status.scrub.problems line for a problem: `v3 trainingRun <location>: <what>`."""
    where = f"{entry.get('name')} {entry.get('location')}"
    return f"v{entry.get('version')} {where}: {entry.get('what')}"


def bounded_ranges(numbers: Iterable[int], limit: int = _RANGES_LIMIT) -> tuple[str, int]:
    """`numbers` as ranges text of at most `limit` characters, cut after a whole range (the
    lowest first), and how many numbers the cut left out."""
    parts: list[str] = []
    size = shown = total = 0
    for first, last in parse_ranges(",".join(str(n) for n in set(numbers))):
        count = last - first + 1
        total += count
        part = ranges_text([(first, last)])
        if shown == total - count and size + len(part) + (1 if parts else 0) <= limit:
            parts.append(part)
            size += len(part) + (1 if len(parts) > 1 else 0)
            shown += count
    return ",".join(parts), total - shown


def _with_versions(document: dict[str, Any], numbers: Iterable[int]) -> dict[str, Any]:
    """`document` with `versions` as bounded ranges (and `versionsOmitted` when cut)."""
    text, left_out = bounded_ranges(numbers)
    document["versions"] = text
    if left_out:
        document["versionsOmitted"] = left_out
    return document


def _fit(document: dict[str, Any], key: str, items: Sequence[Any]) -> str:
    """`document` as JSON with as many of `items` under `key` as fit; `omitted` counts the rest.

    Bisects on how many fit (a report of 10,000 problems is cut in ~14 encodings, not 10,000)."""

    def encoded(count: int) -> str:
        document[key] = list(items[:count])
        document["omitted"] = len(items) - count
        return json.dumps(document, separators=(",", ":"))

    low, high = 0, len(items)
    while low < high:
        middle = (low + high + 1) // 2
        if len(encoded(middle).encode("utf-8")) <= _BUDGET:
            low = middle
        else:
            high = middle - 1
    return encoded(low)


def scrub_report(model: str, checked: Iterable[int], problems: Sequence[Mapping[str, Any]]) -> str:
    """The scrub's termination message: versions checked and the copies that failed."""
    short = [{**p, "what": str(p.get("what", ""))[:_WHAT_LIMIT]} for p in problems]
    versions = set(checked)
    document = _with_versions({"model": model, "checked": len(versions)}, versions)
    return _fit(document, "problems", short)


def _document(text: str, required: Iterable[str]) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ValueError(f"not a report (invalid JSON: {error}): {text[:200]!r}") from None
    if not isinstance(data, dict) or any(k not in data for k in required):
        raise ValueError(f"not a report (needs {', '.join(required)}): {text[:200]!r}")
    return data


def _version_list(value: Any) -> list[int]:
    """A report's `versions` (ranges text, or a list from an older CLI) as sorted numbers."""
    if isinstance(value, str):
        return expand_ranges(value)
    return sorted({int(v) for v in value or []})


def parse_scrub_report(text: str) -> dict[str, Any]:
    """{model, checked, versions, problems, omitted} from a scrub's message; ValueError if not.

    `versions` comes back as numbers; `versionsOmitted` is there when the ranges were cut."""
    data = _document(text, ("model", "checked", "problems"))
    data["versions"] = _version_list(data.get("versions"))
    data.setdefault("omitted", 0)
    return data


def retain_report(
    model: str,
    versions: Iterable[int],
    removed: Sequence[str],
    failed: Sequence[Mapping[str, str]],
    protected: Iterable[int] = (),
) -> str:
    """Retention's termination message: the versions whose copies are gone, counts, failures.

    A version is listed only when all its copies are gone (removed now or absent already).
    `protected`: versions asked for but kept, because the line's champion (or its previous)
    was one of them when retention re-read it just before removing. When the ranges are cut,
    the versions left out are removed but not reported: the operator lists them again and the
    next run reports them as gone (their copies are absent)."""
    document = _with_versions({"model": model, "removed": len(removed)}, versions)
    kept = sorted(set(protected))
    if kept:
        document["protected"] = ranges_text((v, v) for v in kept)
    return _fit(document, "failed", [dict(f) for f in failed])


def parse_retain_report(text: str) -> dict[str, Any]:
    """{model, versions, removed, failed, omitted} from a retention message; ValueError if not.

    `versions` and `protected` (when present) come back as numbers."""
    data = _document(text, ("model", "versions", "failed"))
    data["versions"] = _version_list(data.get("versions"))
    if "protected" in data:
        data["protected"] = _version_list(data["protected"])
    data.setdefault("removed", 0)
    data.setdefault("omitted", 0)
    return data
