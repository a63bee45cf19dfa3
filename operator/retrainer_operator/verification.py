"""Verifying a finished version: trust the trainer's claim checks, re-check what we can reach.

The trainer writes a manifest (docs/contract.md) with every location's uri, sha256 and size,
and its own checks. The operator cannot mount the claim, so claim checks stay the trainer's
(by=trainer); the MinIO object behind the `mlflow` location it re-reads itself (by=operator):
exists, same size, same sha256. Any missing location or failed check fails verification.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from retrainer_operator import locations
from retrainer_operator.conditions import now_iso

__all__ = ["Outcome", "parse_manifest", "verify_manifest"]

OPERATOR, TRAINER = "operator", "trainer"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The status fields from a manifest, whether it all verified, and the first problem."""

    fields: dict[str, Any]
    verified: bool
    message: str


def parse_manifest(raw: bytes | str | None) -> dict[str, Any] | None:
    """The manifest JSON object, or None when absent or not a manifest."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or "version" not in data:
        return None
    return data


def _operator_checks(
    artifacts: list[dict[str, Any]], store: locations.ObjectStore | None
) -> list[locations.Check]:
    """Re-read every object-store location (the `mlflow` one) ourselves."""
    checks = []
    for artifact in artifacts:
        name, uri = str(artifact.get("name", "")), str(artifact.get("uri", ""))
        if name != locations.MLFLOW and not uri.startswith("s3://"):
            continue  # a claim location: the trainer's check stands
        if not uri.startswith("s3://"):
            message = "no s3:// uri in the manifest to re-check"
        elif store is None:
            message = "the operator has no MinIO client (RETRAINER_S3_ENDPOINT, AWS_*)"
        else:
            checks.append(
                locations.check_object(
                    name,
                    uri,
                    store,
                    str(artifact.get("sha256", "")),
                    artifact.get("size"),
                    by=OPERATOR,
                )
            )
            continue
        checks.append(locations.make_check(name, uri, False, message, OPERATOR))
    return checks


def verify_manifest(
    manifest: Mapping[str, Any], version: int, store: locations.ObjectStore | None
) -> Outcome:
    """Check `manifest` for version `version`; return the status fields it yields."""
    artifacts = [dict(a) for a in manifest.get("artifacts") or [] if isinstance(a, Mapping)]
    trainer_verification = manifest.get("verification") or {}
    trainer_checks: list[dict[str, Any]] = [
        {**dict(c), "by": TRAINER}
        for c in trainer_verification.get("checks") or []
        if isinstance(c, Mapping)
    ]
    checks: list[dict[str, Any]] = [*trainer_checks]
    checks.extend(dict(c) for c in _operator_checks(artifacts, store))

    problems: list[str] = []
    if int(manifest.get("version", -1)) != version:
        problems.append(f"manifest is for version {manifest.get('version')}, expected {version}")
    names = {str(a.get("name")) for a in artifacts}
    missing = [n for n in locations.LOCATION_NAMES if n not in names]
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
    fields: dict[str, Any] = {
        "artifacts": artifacts,
        "verification": {"verified": verified, "checkedAt": now_iso(), "checks": checks},
    }
    for key in ("metrics", "mlflow", "lineage"):
        if isinstance(manifest.get(key), Mapping):
            fields[key] = dict(manifest[key])
    return Outcome(fields, verified, "; ".join(problems))
