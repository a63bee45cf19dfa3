"""Preflight checks the CRD's CEL rules cannot express, because they need the cluster or
the operator's policy.

Run before a version is allocated: spec.image is an allowed trainer image, no toleration
tolerates every taint (admission rejects it too, but an older CRD in the cluster may not), the
base version exists and is verified, the claim exists, the MinIO credentials Secret exists. A
failure names the missing thing and the fix; the RetrainJob then goes straight to Failed
without using a version number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from retrainer_contract import env as trainer_env
from retrainer_contract import versions as contract_versions

from retrainer_operator import versions
from retrainer_operator.conditions import Reason
from retrainer_operator.config import OperatorConfig, image_allowed, image_repository

__all__ = [
    "CheckFailure",
    "Preflight",
    "PreflightClient",
    "check_image",
    "check_tolerations",
    "preflight",
]


class PreflightClient(versions.LedgerClient, Protocol):
    """What the checks read from the cluster (kube.Cluster implements it)."""

    def claim_exists(self, namespace: str, name: str) -> bool: ...

    def secret_exists(self, namespace: str, name: str) -> bool: ...


@dataclasses.dataclass(frozen=True)
class CheckFailure:
    """Why a RetrainJob cannot start: a CamelCase reason and a message with the fix."""

    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Preflight:
    """The checks passed; `base_version` is the resolved spec.baseModel.version (if any)."""

    base_version: int | None


def check_image(spec: Mapping[str, Any], config: OperatorConfig) -> CheckFailure | None:
    """spec.image, when set, must come from an allowed repository (the operator's policy:
    creating a RetrainJob must not mean running any image with the claim and S3 credentials)."""
    image = spec.get("image")
    if not image:
        return None
    image = str(image)
    allowed = ", ".join(config.allowed_trainer_images) or "none"
    fix = (
        f"leave spec.image unset to use {config.trainer_image}, use an image from an allowed "
        "repository, or have the operator's administrator add the repository to the chart "
        "value trainer.allowedImages (RETRAINER_ALLOWED_TRAINER_IMAGES)"
    )
    if image_repository(image) is None:
        return CheckFailure(
            Reason.IMAGE_NOT_ALLOWED,
            f"spec.image {image!r} is not a valid image reference "
            f"([registry/]repository[:tag][@digest]); allowed repositories: {allowed}; {fix}",
        )
    if not image_allowed(image, config.allowed_trainer_images):
        return CheckFailure(
            Reason.IMAGE_NOT_ALLOWED,
            f"spec.image {image!r} (repository {image_repository(image)}) is not an allowed "
            f"trainer image; allowed repositories: {allowed}; {fix}",
        )
    return None


def check_tolerations(spec: Mapping[str, Any]) -> CheckFailure | None:
    """No toleration may tolerate every taint (operator Exists without a key)."""
    tolerations = (spec.get("scheduling") or {}).get("tolerations") or []
    for index, toleration in enumerate(tolerations):
        if toleration.get("operator") == "Exists" and not toleration.get("key"):
            return CheckFailure(
                Reason.TOLERATION_NOT_ALLOWED,
                f"spec.scheduling.tolerations[{index}]: operator Exists without a key tolerates "
                "every taint, which is not allowed; set key to the taint's key (and apply the "
                "current RetrainJob CRD, whose admission rejects this)",
            )
    return None


def preflight(
    client: PreflightClient, body: Mapping[str, Any], config: OperatorConfig
) -> Preflight | CheckFailure:
    """Check what the RetrainJob `body` needs from the cluster; resolve its base version."""
    namespace = body["metadata"]["namespace"]
    spec = body.get("spec") or {}
    model = spec["model"]

    policy = check_image(spec, config) or check_tolerations(spec)
    if policy is not None:
        return policy

    claim = (spec.get("storage") or {}).get("claimName") or config.claim_name
    if not client.claim_exists(namespace, claim):
        return CheckFailure(
            Reason.CLAIM_NOT_FOUND,
            f"PersistentVolumeClaim {claim!r} not found in namespace {namespace!r}: create it, "
            "or set spec.storage.claimName to an existing claim",
        )
    if not client.secret_exists(namespace, config.s3_secret_name):
        return CheckFailure(
            Reason.SECRET_NOT_FOUND,
            f"Secret {config.s3_secret_name!r} (keys {trainer_env.SECRET_ACCESS_KEY_FIELD}, "
            f"{trainer_env.SECRET_SECRET_KEY_FIELD}: the MinIO credentials) not found in "
            f"namespace {namespace!r}: create it there",
        )

    requested = (spec.get("baseModel") or {}).get("version")
    base_version: int | None = None
    if requested is not None:
        base_version = versions.resolve_base(client, namespace, model, str(requested))
        if base_version is None:
            if requested == contract_versions.LATEST:
                which = "no Succeeded and verified version exists yet"
            elif requested == contract_versions.CHAMPION:
                which = (
                    f"the ModelLine {model!r} names no champion (or its champion is not "
                    "verified); promote one (`retrainer promote MODEL N`) or use latest"
                )
            else:
                which = f"version {requested} does not exist or is not Succeeded and verified"
            return CheckFailure(
                Reason.BASE_MODEL_NOT_FOUND,
                f"spec.baseModel.version={requested!r}: {which} for model {model!r} in "
                f"namespace {namespace!r}; train one first (baseModel.architecture or uri)",
            )
    return Preflight(base_version)
