"""The status vocabulary is one set of words: the CRDs', the operator's and the readers'."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from retrainer_contract import champion, evaluation
from retrainer_contract import status as vocabulary

ROOT = Path(__file__).resolve().parents[3]
CAMEL_CASE = re.compile(r"[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)*")


def status_with(**conds: str) -> dict[str, Any]:
    return {"conditions": [{"type": t, "status": s} for t, s in conds.items()]}


def status_schema(crd: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "crds" / crd).read_text(encoding="utf-8"))
    schema: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["status"]["properties"])


@pytest.mark.parametrize(
    ("conds", "phase"),
    [
        ({}, vocabulary.PENDING),
        ({vocabulary.ACCEPTED: vocabulary.TRUE}, vocabulary.PENDING),
        (
            {vocabulary.ACCEPTED: vocabulary.TRUE, vocabulary.RUNNING: vocabulary.TRUE},
            vocabulary.PHASE_RUNNING,
        ),
        (
            {vocabulary.RUNNING: vocabulary.FALSE, vocabulary.COMPLETE: vocabulary.TRUE},
            vocabulary.VERIFYING,
        ),
        (
            {vocabulary.COMPLETE: vocabulary.TRUE, vocabulary.VERIFIED: vocabulary.TRUE},
            vocabulary.SUCCEEDED,
        ),
        (
            {
                vocabulary.COMPLETE: vocabulary.TRUE,
                vocabulary.VERIFIED: vocabulary.TRUE,
                vocabulary.PROMOTED: vocabulary.UNKNOWN,
            },
            vocabulary.VERIFYING,
        ),
        (
            {
                vocabulary.COMPLETE: vocabulary.TRUE,
                vocabulary.VERIFIED: vocabulary.TRUE,
                vocabulary.PROMOTED: vocabulary.FALSE,
            },
            vocabulary.SUCCEEDED,
        ),
        (
            {vocabulary.COMPLETE: vocabulary.TRUE, vocabulary.FAILED: vocabulary.TRUE},
            vocabulary.PHASE_FAILED,
        ),
    ],
)
def test_the_phase_is_a_summary_of_the_conditions(conds: dict[str, str], phase: str) -> None:
    assert vocabulary.derive_phase(status_with(**conds)) == phase


def test_only_succeeded_and_failed_with_conditions_are_terminal() -> None:
    assert {vocabulary.SUCCEEDED, vocabulary.PHASE_FAILED} == vocabulary.TERMINAL_PHASES
    succeeded = {vocabulary.COMPLETE: vocabulary.TRUE, vocabulary.VERIFIED: vocabulary.TRUE}
    assert vocabulary.is_terminal(status_with(**succeeded))
    assert vocabulary.is_terminal(status_with(**{vocabulary.FAILED: vocabulary.TRUE}))
    assert not vocabulary.is_terminal(status_with(**{vocabulary.COMPLETE: vocabulary.TRUE}))
    assert not vocabulary.is_terminal({})
    # A phase the status claims without conditions is not taken on trust.
    assert not vocabulary.is_terminal({"phase": vocabulary.SUCCEEDED})


def test_a_condition_is_read_by_its_type_and_true_only_when_its_status_is_true() -> None:
    status = status_with(
        **{vocabulary.VERIFIED: vocabulary.TRUE, vocabulary.PROMOTED: vocabulary.UNKNOWN}
    )
    found = vocabulary.get_condition(status, vocabulary.VERIFIED)
    assert found == {"type": vocabulary.VERIFIED, "status": vocabulary.TRUE}
    found["status"] = vocabulary.FALSE  # a copy: the status is not changed through it
    assert vocabulary.is_true(status, vocabulary.VERIFIED)
    assert not vocabulary.is_true(status, vocabulary.PROMOTED)
    assert not vocabulary.is_true(status, vocabulary.FAILED)
    assert vocabulary.get_condition(status, vocabulary.FAILED) is None
    assert vocabulary.condition_status(status, vocabulary.PROMOTED) == vocabulary.UNKNOWN
    assert vocabulary.condition_status(status, vocabulary.FAILED) is None
    assert (
        vocabulary.condition_status({"conditions": [{"type": vocabulary.READY}]}, vocabulary.READY)
        == "Unknown"
    )


def test_every_reason_is_camel_case_and_named_once() -> None:
    names = {n: v for n, v in vars(vocabulary.Reason).items() if n.isupper()}
    assert set(names.values()) == vocabulary.REASONS
    assert len(set(names.values())) == len(names), "two names for one reason"
    assert [v for v in names.values() if not CAMEL_CASE.fullmatch(v)] == []


def test_the_new_reasons_are_in_the_vocabulary() -> None:
    assert {
        "AliasInSync",
        "AliasMoved",
        "AliasUnavailable",
        "NoRegisteredModel",
        "EvidenceUnavailable",
        "AllocationUnrecorded",
    } <= vocabulary.REASONS


def test_promotion_decisions_are_reasons_of_the_promoted_condition() -> None:
    assert set(evaluation.DECISIONS) <= vocabulary.REASONS
    assert champion.PROMOTED == vocabulary.Reason.PROMOTED


def test_the_phases_are_the_retrainjob_crds_enum() -> None:
    schema = status_schema("retrainer.dev_retrainjobs.yaml")
    assert tuple(schema["phase"]["enum"]) == vocabulary.PHASES


@pytest.mark.parametrize("crd", ["retrainer.dev_retrainjobs.yaml", "retrainer.dev_modellines.yaml"])
def test_condition_statuses_are_the_crds_enum(crd: str) -> None:
    condition = status_schema(crd)["conditions"]["items"]["properties"]
    assert set(condition["status"]["enum"]) == {
        vocabulary.TRUE,
        vocabulary.FALSE,
        vocabulary.UNKNOWN,
    }


def test_the_modelline_crd_names_each_line_condition() -> None:
    described = status_schema("retrainer.dev_modellines.yaml")["conditions"]["description"]
    assert [t for t in vocabulary.LINE_CONDITION_TYPES if t not in described] == []


def test_the_modelline_crd_names_each_version_state() -> None:
    versions = status_schema("retrainer.dev_modellines.yaml")["versions"]["items"]["properties"]
    described = versions["state"]["description"]
    assert [s for s in vocabulary.VERSION_STATES if s not in described] == []


def test_the_operator_speaks_the_contracts_words() -> None:
    from retrainer_operator import conditions, upkeep

    assert conditions.Reason is vocabulary.Reason
    for name in vocabulary.__all__:
        assert getattr(conditions, name) is getattr(vocabulary, name), name
    # The upkeep's words, until upkeep.py takes them from the contract too.
    assert upkeep.SCRUBBED == vocabulary.SCRUBBED
    upkeep_reasons = {n: v for n, v in vars(upkeep.Reason).items() if n.isupper()}
    assert {n: getattr(vocabulary.Reason, n, None) for n in upkeep_reasons} == upkeep_reasons
