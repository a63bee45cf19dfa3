"""The upkeep of a model line's claim: what a scrub reports, what retention removes.

The operator starts both as Jobs that run the CLI in the operator image (claimjob.py):
`retrainer verify MODEL --all` (the scrub) and `retrainer retain MODEL N...` (retention). The
CLI writes its report as the pod's termination message and the operator parses it, so the
report shapes, their 4 KiB bound and the claim paths retention removes are written once, here.

Retention removes three things per version: the production copy, the quick-access copy and the
Ultralytics run folder (with best.pt, last.pt and the manifest). The metadata file stays, so
the claim still says the version existed; MLflow is never touched.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from retrainer_contract.documents import TERMINATION_LIMIT
from retrainer_contract.layout import VersionPaths

__all__ = [
    "CHANGED",
    "MISSING",
    "UNREADABLE",
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


def _fit(document: dict[str, Any], key: str, items: Sequence[Any]) -> str:
    """`document` as JSON with as many of `items` under `key` as fit; `omitted` counts the rest."""
    kept = list(items)
    while True:
        document[key] = kept
        document["omitted"] = len(items) - len(kept)
        text = json.dumps(document, separators=(",", ":"))
        if len(text.encode("utf-8")) <= _BUDGET or not kept:
            return text
        kept = kept[:-1]


def scrub_report(model: str, checked: Iterable[int], problems: Sequence[Mapping[str, Any]]) -> str:
    """The scrub's termination message: versions checked and the copies that failed."""
    short = [{**p, "what": str(p.get("what", ""))[:_WHAT_LIMIT]} for p in problems]
    versions = sorted(set(checked))
    return _fit({"model": model, "checked": len(versions), "versions": versions}, "problems", short)


def _document(text: str, required: Iterable[str]) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ValueError(f"not a report (invalid JSON: {error}): {text[:200]!r}") from None
    if not isinstance(data, dict) or any(k not in data for k in required):
        raise ValueError(f"not a report (needs {', '.join(required)}): {text[:200]!r}")
    return data


def parse_scrub_report(text: str) -> dict[str, Any]:
    """{model, checked, versions, problems, omitted} from a scrub's message; ValueError if not."""
    data = _document(text, ("model", "checked", "problems"))
    data.setdefault("versions", [])
    data.setdefault("omitted", 0)
    return data


def retain_report(
    model: str,
    versions: Iterable[int],
    removed: Sequence[str],
    failed: Sequence[Mapping[str, str]],
) -> str:
    """Retention's termination message: the versions whose copies are gone, counts, failures.

    A version is listed only when all its copies are gone (removed now or absent already)."""
    return _fit(
        {"model": model, "versions": sorted(set(versions)), "removed": len(removed)},
        "failed",
        [dict(f) for f in failed],
    )


def parse_retain_report(text: str) -> dict[str, Any]:
    """{model, versions, removed, failed, omitted} from a retention message; ValueError if not."""
    data = _document(text, ("model", "versions", "failed"))
    data.setdefault("removed", 0)
    data.setdefault("omitted", 0)
    return data
