"""Verifying a finished version: trust the trainer's claim checks, re-check what we can reach.

The trainer writes a manifest (docs/contract.md) with every artifact's uri, sha256 and size,
and its own checks. The operator cannot mount the claim, so claim checks stay the trainer's
(by=trainer); the MinIO object behind the `mlflow` artifact it re-reads itself with the
contract's verifier (by=operator): exists, same size, same sha256. Any missing artifact or
failed check fails verification.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from retrainer_contract import documents, integrity, layout
from retrainer_contract.objectstore import ObjectStore

__all__ = ["Outcome", "parse_manifest", "verify_manifest"]

parse_manifest = documents.parse_manifest


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The status fields from a manifest, whether it all verified, and the first problem.

    `transient`: the only problems are copies the operator could not reach (the object store
    is down): nothing is known to be wrong, so verification is retried, never failed."""

    fields: dict[str, Any]
    verified: bool
    message: str
    transient: bool = False


def _operator_checks(
    artifacts: list[dict[str, Any]], store: ObjectStore | None
) -> list[integrity.Check]:
    """Re-read every artifact outside the claim (the `mlflow` copy) ourselves."""
    checks = integrity.check_artifacts(
        artifacts, storage_root=None, client=store, by=integrity.BY_OPERATOR
    )
    checked = {c["name"] for c in checks}
    for artifact in artifacts:
        name, uri = str(artifact.get("name", "")), str(artifact.get("uri", ""))
        if name == layout.MLFLOW and name not in checked:
            message = "no s3:// uri in the manifest to re-check"
            checks.append(integrity.make_check(name, uri, False, message, integrity.BY_OPERATOR))
    return checks


def verify_manifest(
    manifest: Mapping[str, Any], version: int, store: ObjectStore | None, uid: str = ""
) -> Outcome:
    """Check `manifest` for version `version` of RetrainJob `uid`; the status fields it yields.

    A manifest that names another owner is never this RetrainJob's, whatever it verifies."""
    artifacts = [dict(a) for a in manifest.get("artifacts") or [] if isinstance(a, Mapping)]
    trainer_verification = manifest.get("verification") or {}
    trainer_checks: list[dict[str, Any]] = [
        {**dict(c), "by": integrity.BY_TRAINER}
        for c in trainer_verification.get("checks") or []
        if isinstance(c, Mapping)
    ]
    checks: list[dict[str, Any]] = [*trainer_checks]
    checks.extend(dict(c) for c in _operator_checks(artifacts, store))

    problems: list[str] = []
    if int(manifest.get("version", -1)) != version:
        problems.append(f"manifest is for version {manifest.get('version')}, expected {version}")
    recorded_owner = documents.owner_uid(manifest)
    if uid and recorded_owner and recorded_owner != uid:
        problems.append(f"manifest belongs to RetrainJob uid {recorded_owner}, not {uid}")
    names = {str(a.get("name")) for a in artifacts}
    missing = [n for n in layout.ARTIFACT_NAMES if n not in names]
    if missing:
        problems.append(f"locations missing from the manifest: {', '.join(missing)}")
    if not trainer_verification.get("verified", False):
        problems.append("the trainer did not verify all locations")
    problems.extend(
        f"{c.get('name')} ({c.get('by')}): {c.get('message', 'not ok')}"
        for c in checks
        if not c.get("ok")
    )

    verified = not problems
    unreachable = [
        c
        for c in checks
        if not c.get("ok") and str(c.get("message", "")).startswith(integrity.UNREACHABLE)
    ]
    transient = bool(unreachable) and len(unreachable) == len(problems)
    fields: dict[str, Any] = {
        "artifacts": artifacts,
        "verification": {**integrity.verification(checks), "verified": verified},
    }
    for key in ("metrics", "mlflow", "lineage", "evaluation"):
        if isinstance(manifest.get(key), Mapping):
            fields[key] = dict(manifest[key])
    return Outcome(fields, verified, "; ".join(problems), transient)
