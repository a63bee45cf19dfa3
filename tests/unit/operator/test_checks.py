"""Preflight: the operator's policy (images, tolerations) and what the cluster must hold, all
checked before a version number is used."""

from __future__ import annotations

from typing import Any

import pytest
from lines_fake import NO_EVIDENCE, FakeLines
from retrainer_operator import checks, versions
from retrainer_operator.conditions import Reason
from retrainer_operator.config import OperatorConfig

CONFIG = OperatorConfig.from_env({})


class FakeCluster(FakeLines):
    """Claims, Secrets and ModelLines in memory; counts ledger writes."""

    def __init__(self, claims: bool = True, secrets: bool = True) -> None:
        super().__init__()
        self.claims = claims
        self.secrets = secrets

    def claim_exists(self, namespace: str, name: str) -> bool:
        return self.claims

    def secret_exists(self, namespace: str, name: str) -> bool:
        return self.secrets


def retrainjob(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "shapes-run", "namespace": "team", "uid": "uid-1"},
        "spec": {
            "model": "shapes",
            "baseModel": {"architecture": "yolo11n.yaml"},
            "dataset": {"uri": "datasets/shapes"},
            **spec,
        },
    }


def test_a_retrainjob_without_image_or_tolerations_passes() -> None:
    assert checks.preflight(FakeCluster(), retrainjob(), CONFIG) == checks.Preflight(None)


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/retrainer/trainer:0.2.0",
        "ghcr.io/retrainer/trainer@sha256:" + "a" * 64,
        "ghcr.io/retrainer/trainer",
    ],
)
def test_an_image_of_the_allowed_repository_passes(image: str) -> None:
    assert checks.preflight(FakeCluster(), retrainjob(image=image), CONFIG) == checks.Preflight(
        None
    )


def test_an_image_outside_the_allowlist_fails_naming_image_list_and_fix() -> None:
    cluster = FakeCluster()
    outcome = checks.preflight(
        cluster, retrainjob(image="ghcr.io/retrainer/trainer-evil:0.2.0"), CONFIG
    )
    assert isinstance(outcome, checks.CheckFailure)
    assert outcome.reason == Reason.IMAGE_NOT_ALLOWED == "ImageNotAllowed"
    assert "spec.image 'ghcr.io/retrainer/trainer-evil:0.2.0'" in outcome.message
    assert "allowed repositories: ghcr.io/retrainer/trainer" in outcome.message
    assert "trainer.allowedImages" in outcome.message
    assert cluster.writes == 0  # before a version is allocated


def test_an_invalid_image_reference_fails_as_not_allowed() -> None:
    outcome = checks.preflight(FakeCluster(), retrainjob(image="ghcr.io/Evil/Trainer"), CONFIG)
    assert isinstance(outcome, checks.CheckFailure)
    assert outcome.reason == Reason.IMAGE_NOT_ALLOWED
    assert "not a valid image reference" in outcome.message


def test_the_image_is_checked_before_the_cluster() -> None:
    outcome = checks.preflight(
        FakeCluster(claims=False), retrainjob(image="docker.io/evil/miner"), CONFIG
    )
    assert isinstance(outcome, checks.CheckFailure)
    assert outcome.reason == Reason.IMAGE_NOT_ALLOWED


def test_prefixes_in_the_allowlist_allow_what_lies_below() -> None:
    config = OperatorConfig.from_env({"RETRAINER_ALLOWED_TRAINER_IMAGES": "registry.local/ml/"})
    passed = checks.preflight(FakeCluster(), retrainjob(image="registry.local/ml/yolo:1"), config)
    assert passed == checks.Preflight(None)
    # The configured allowlist replaces the default: the trainer image's repository needs
    # listing to be named in spec.image (leaving spec.image unset always works).
    failed = checks.preflight(
        FakeCluster(), retrainjob(image="ghcr.io/retrainer/trainer:0.2.0"), config
    )
    assert isinstance(failed, checks.CheckFailure)


@pytest.mark.parametrize(
    "toleration",
    [{"operator": "Exists"}, {"key": "", "operator": "Exists", "effect": "NoExecute"}],
)
def test_a_toleration_of_every_taint_fails(toleration: dict[str, Any]) -> None:
    body = retrainjob(
        scheduling={"tolerations": [{"key": "gpu", "operator": "Exists"}, toleration]}
    )
    outcome = checks.preflight(FakeCluster(), body, CONFIG)
    assert isinstance(outcome, checks.CheckFailure)
    assert outcome.reason == Reason.TOLERATION_NOT_ALLOWED == "TolerationNotAllowed"
    assert "spec.scheduling.tolerations[1]" in outcome.message
    assert "set key" in outcome.message


def test_tolerations_naming_a_taint_pass() -> None:
    body = retrainjob(
        scheduling={
            "tolerations": [
                {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "team", "operator": "Equal", "value": "a"},
            ]
        }
    )
    assert checks.preflight(FakeCluster(), body, CONFIG) == checks.Preflight(None)


def test_cluster_checks_still_follow() -> None:
    outcome = checks.preflight(FakeCluster(claims=False), retrainjob(), CONFIG)
    assert isinstance(outcome, checks.CheckFailure)
    assert outcome.reason == Reason.CLAIM_NOT_FOUND
    outcome = checks.preflight(FakeCluster(secrets=False), retrainjob(), CONFIG)
    assert isinstance(outcome, checks.CheckFailure)
    assert outcome.reason == Reason.SECRET_NOT_FOUND
    cluster = FakeCluster()
    versions.allocate(cluster, "team", "shapes", "uid-0", "first", None, NO_EVIDENCE)
    versions.mark_verified(cluster, "team", "shapes", 1, "sha")
    body = retrainjob(baseModel={"version": "latest"})
    assert checks.preflight(cluster, body, CONFIG) == checks.Preflight(1)
