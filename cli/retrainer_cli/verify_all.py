"""`retrainer verify MODEL --all`: check every version on the claim, report only what failed.

This is the scrub the operator runs at spec.scrub.intervalSeconds (a Job in the operator image,
see retrainer_operator.upkeep), and what a person runs to ask "is anything on this claim rotten?".
Each version is checked exactly like `retrainer verify MODEL N` (verify_checks.py); the output
is one line per version plus one per copy that failed, and the termination message is the
contract's compact scrub report (retrainer_contract.upkeep), which the operator parses.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from retrainer_contract import layout, upkeep

from retrainer_cli.verify_checks import RemoteSettings, VerifyRow, verify_version

__all__ = ["ScrubResult", "kind", "verify_all"]


@dataclasses.dataclass(frozen=True)
class ScrubResult:
    """What `--all` found: the human text, the termination report, the failed copies."""

    text: str
    report: str
    problems: list[dict[str, Any]]


def kind(row: VerifyRow) -> str:
    """Whether a failed copy is missing (gone from the claim or MinIO), could not be read now
    (MinIO down, no credentials), or changed."""
    if row.message.startswith("missing") or "NoSuchKey" in row.message:
        return upkeep.MISSING
    if row.message.startswith(("unreadable", "no MinIO")):
        return upkeep.UNREADABLE
    return upkeep.CHANGED


def _relative(location: str, root: Path) -> str:
    prefix = str(root) + os.sep
    return location[len(prefix) :] if location.startswith(prefix) else location


def verify_all(root: Path, model: str, remote: RemoteSettings | str | None) -> ScrubResult:
    """Check every version of `model` with a production copy under `root`, oldest first."""
    versions = sorted(layout.claim_versions(root, model))
    lines: list[str] = []
    problems: list[dict[str, Any]] = []
    for version in versions:
        rows = verify_version(root, model, version, remote)
        failed = [r for r in rows if r.ok is False]
        lines.append(f"v{version}: " + (f"{len(failed)} FAILED" if failed else "ok"))
        for row in failed:
            entry = upkeep.problem(
                version, row.name, _relative(row.location, root), row.message, kind(row)
            )
            problems.append(entry)
            lines.append(f"  {upkeep.problem_text(entry)}")
    verdict = (
        f"FAILED: {model}: {len(problems)} copies failed in {len(versions)} versions"
        if problems
        else f"OK: {model}: {len(versions)} versions verified"
    )
    text = "\n".join([*lines, verdict])
    return ScrubResult(text, upkeep.scrub_report(model, versions, problems), problems)
