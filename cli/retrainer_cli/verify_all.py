"""`retrainer verify MODEL --all`: check every version on the claim, report only what failed.

This is the scrub the operator runs at spec.scrub.intervalSeconds (a Job in the operator image,
see retrainer_operator.upkeep), and what a person runs to ask "is anything on this claim rotten?".
Each version is checked exactly like `retrainer verify MODEL N` (verify_checks.py); the output
is one line per version plus one per copy that failed, and the termination message is the
contract's compact scrub report (retrainer_contract.upkeep), which the operator parses.

Which versions are "on the claim" must not depend on any one copy: listing by production copy
alone turns a deleted production copy into a version that is not there, reported as intact.
So a version is listed when any of these survives: its production copy, a manifest in its run
folder that says it was verified, its metadata file next to its quick-access copy (both written
only once training ended; a failed verification removes the metadata), or the operator's word
(`RETRAINER_SCRUB_VERSIONS`: the ledger's verified versions that retention has not removed).
A version retention removed keeps only its metadata file, and one still training has neither
metadata nor a verified manifest: neither is listed, so neither is reported as damage.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from retrainer_contract import documents, layout, upkeep, versions

from retrainer_cli.verify_checks import RemoteSettings, VerifyRow, verify_version

__all__ = ["ScrubResult", "expected_versions", "kind", "stored_versions", "verify_all"]


@dataclasses.dataclass(frozen=True)
class ScrubResult:
    """What `--all` found: the human text, the termination report, the failed copies."""

    text: str
    report: str
    problems: list[dict[str, Any]]


def kind(row: VerifyRow) -> str:
    """Whether a failed copy is missing (gone from the claim or MinIO), could not be read now
    (MinIO down, no credentials, or no manifest left to say where the MLflow copy is: no
    evidence that copy is bad), or changed."""
    if row.message.startswith("missing") or "NoSuchKey" in row.message:
        return upkeep.MISSING
    if row.message.startswith(("unreadable", "no MinIO", "no valid")):
        return upkeep.UNREADABLE
    return upkeep.CHANGED


def _relative(location: str, root: Path) -> str:
    prefix = str(root) + os.sep
    return location[len(prefix) :] if location.startswith(prefix) else location


def expected_versions(env: Mapping[str, str] | None = None) -> list[int]:
    """The versions the operator says must be on the claim (RETRAINER_SCRUB_VERSIONS)."""
    env = os.environ if env is None else env
    return versions.expand_ranges(env.get(upkeep.VERSIONS_ENV, ""))


def _numbered(folder: Path, prefix: str, suffix: str = "") -> set[int]:
    """N of every `<prefix>N<suffix>` entry in `folder` (none when it is absent)."""
    found: set[int] = set()
    if not folder.is_dir():
        return found
    for path in folder.iterdir():
        name = path.name
        if name.startswith(prefix) and name.endswith(suffix):
            digits = name[len(prefix) : len(name) - len(suffix)]
            if digits.isdigit() and not digits.startswith("0"):
                found.add(int(digits))
    return found


def _verified_manifest(path: Path) -> bool:
    """True when the run folder's manifest records a verified version."""
    try:
        data = documents.read_json(path)
    except (ValueError, OSError):
        return False
    return bool((data.get("verification") or {}).get("verified"))


def stored_versions(root: Path, model: str, expected: Iterable[int] = ()) -> list[int]:
    """Every version of `model` under `root` that was stored whole, from evidence that survives
    the loss of any one copy, plus the `expected` versions; sorted."""
    paths = layout.VersionPaths.for_version(root, model, 1)
    found = set(layout.claim_versions(root, model)) | set(expected)
    metadata = _numbered(paths.models_dir, "retrained_v", "_metadata.json")
    quick = _numbered(paths.train_dir, "retrained_v", ".pt")
    found |= metadata & quick
    for version in _numbered(paths.train_dir, "retrain_v") - found:
        if _verified_manifest(layout.VersionPaths.for_version(root, model, version).manifest):
            found.add(version)
    return sorted(found)


def verify_all(
    root: Path,
    model: str,
    remote: RemoteSettings | str | None,
    expected: Iterable[int] | None = None,
) -> ScrubResult:
    """Check every stored version of `model` under `root` (stored_versions), oldest first.

    `expected`: the versions that must be there (None: from RETRAINER_SCRUB_VERSIONS)."""
    listed = stored_versions(root, model, expected_versions() if expected is None else expected)
    lines: list[str] = []
    problems: list[dict[str, Any]] = []
    for version in listed:
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
        f"FAILED: {model}: {len(problems)} copies failed in {len(listed)} versions"
        if problems
        else f"OK: {model}: {len(listed)} versions verified"
    )
    text = "\n".join([*lines, verdict])
    return ScrubResult(text, upkeep.scrub_report(model, listed, problems), problems)
