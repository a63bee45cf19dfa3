"""The RetrainJob CRD on a real apiserver: it is accepted (structural, CEL within cost limits),
bad manifests are rejected with a message naming the field, the spec is immutable, and the
status subresource feeds the `kubectl get` columns.

Each file in crd_invalid/ starts with ``# expect: <substring>``: applying it must fail and the
apiserver's error must contain that substring.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_fixture import Kubectl, apply_crd, crd  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
INVALID = sorted((HERE / "crd_invalid").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (.+)$", re.MULTILINE)

MINIMAL: dict[str, Any] = {
    "apiVersion": "retrainer.dev/v1alpha1",
    "kind": "RetrainJob",
    "metadata": {"name": "shapes-minimal"},
    "spec": {
        "model": "shapes",
        "baseModel": {"architecture": "yolo11n.yaml"},
        "dataset": {"uri": "datasets/shapes"},
    },
}


def apply(kubectl: Kubectl, namespace: str, doc: dict[str, Any] | str, check: bool = True) -> Any:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    return kubectl(
        "apply", "--validate=strict", "-n", namespace, "-f", "-", input=text, check=check
    )


def get(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    out = kubectl("get", "retrainjob", name, "-n", namespace, "-o", "json").stdout
    obj: dict[str, Any] = json.loads(out)
    return obj


@pytest.fixture(scope="module")
def shared_namespace(kubectl: Kubectl, crd: str) -> Iterator[str]:  # noqa: F811
    """One namespace for the many rejected manifests: nothing is ever stored in it."""
    name = f"t-crd-invalid-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "retrainer.dev/test=true")
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_crd_is_established_with_a_structural_schema(kubectl: Kubectl, crd: str) -> None:  # noqa: F811
    obj = json.loads(kubectl("get", "crd", crd, "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert "NonStructuralSchema" not in conditions


def test_applying_the_crd_again_changes_nothing(kubectl: Kubectl, crd: str) -> None:  # noqa: F811
    before = json.loads(kubectl("get", "crd", crd, "-o", "json").stdout)
    apply_crd(kubectl)
    after = json.loads(kubectl("get", "crd", crd, "-o", "json").stdout)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_there_are_at_least_thirty_invalid_manifests_each_with_an_expectation() -> None:
    assert len(INVALID) >= 30
    for path in INVALID:
        assert EXPECT.search(path.read_text(encoding="utf-8")), f"{path.name}: no # expect:"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_manifest_is_rejected_naming_the_field(
    kubectl: Kubectl, shared_namespace: str, path: Path
) -> None:
    text = path.read_text(encoding="utf-8")
    match = EXPECT.search(text)
    assert match, f"{path.name} has no '# expect:' line"
    result = apply(kubectl, shared_namespace, text, check=False)
    assert result.returncode != 0, f"{path.name} was admitted: {result.stdout}"
    assert match.group(1).strip() in result.stderr


def test_minimal_retrainjob_gets_the_defaults(
    kubectl: Kubectl,
    crd: str,  # noqa: F811
    namespace: str,
) -> None:
    apply(kubectl, namespace, MINIMAL)
    spec = get(kubectl, namespace, "shapes-minimal")["spec"]
    assert spec["training"] == {"epochs": 10, "imgsz": 640, "batch": 16, "patience": 50, "seed": 0}
    assert spec["resources"] == {"gpus": 0, "cpu": "1", "memory": "4Gi"}
    assert spec["retry"] == {"backoffLimit": 2}
    assert spec["mlflow"] == {}


def test_extra_args_keep_numbers_strings_and_booleans(
    kubectl: Kubectl,
    crd: str,  # noqa: F811
    namespace: str,
) -> None:
    doc = json.loads(json.dumps(MINIMAL))
    doc["spec"]["training"] = {
        "extraArgs": {"lr0": 0.01, "optimizer": "SGD", "cos_lr": True, "close_mosaic": 2}
    }
    apply(kubectl, namespace, doc)
    extra = get(kubectl, namespace, "shapes-minimal")["spec"]["training"]["extraArgs"]
    assert extra == {"lr0": 0.01, "optimizer": "SGD", "cos_lr": True, "close_mosaic": 2}
    assert isinstance(extra["cos_lr"], bool)


def test_spec_update_is_rejected_as_immutable(
    kubectl: Kubectl,
    crd: str,  # noqa: F811
    namespace: str,
) -> None:
    apply(kubectl, namespace, MINIMAL)
    changed = json.loads(json.dumps(MINIMAL))
    changed["spec"]["training"] = {"epochs": 5}
    result = apply(kubectl, namespace, changed, check=False)
    assert result.returncode != 0
    assert "spec is immutable" in result.stderr
    patch = kubectl(
        "patch", "retrainjob", "shapes-minimal", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"dataset":{"uri":"datasets/other"}}}', check=False,
    )  # fmt: skip
    assert patch.returncode != 0
    assert "spec is immutable" in patch.stderr
    assert get(kubectl, namespace, "shapes-minimal")["spec"]["dataset"]["uri"] == "datasets/shapes"


def test_reapplying_the_same_manifest_and_changing_metadata_are_allowed(
    kubectl: Kubectl,
    crd: str,  # noqa: F811
    namespace: str,
) -> None:
    apply(kubectl, namespace, MINIMAL)
    assert "unchanged" in apply(kubectl, namespace, MINIMAL).stdout
    # The operator (Kopf) keeps its bookkeeping in annotations and adds a finalizer.
    kubectl(
        "patch", "retrainjob", "shapes-minimal", "-n", namespace, "--type=merge", "-p",
        '{"metadata":{"annotations":{"retrainer.dev/note":"x"},"finalizers":["retrainer.dev/t"]}}',
    )  # fmt: skip
    meta = get(kubectl, namespace, "shapes-minimal")["metadata"]
    assert meta["annotations"]["retrainer.dev/note"] == "x"
    kubectl(
        "patch", "retrainjob", "shapes-minimal", "-n", namespace, "--type=json",
        "-p", '[{"op":"remove","path":"/metadata/finalizers"}]',
    )  # fmt: skip


STATUS: dict[str, Any] = {
    "status": {
        "observedGeneration": 1,
        "phase": "Succeeded",
        "version": 3,
        "jobName": "retrain-shapes-v3",
        "attempts": 1,
        "progress": {"epoch": 3, "epochs": 3, "text": "3/3"},
        "metrics": {"precision": 0.61, "recall": 0.52, "mAP50": 0.58, "mAP50_95": 0.4125},
        "mlflow": {"experimentId": "1", "runId": "0123456789abcdef", "promoted": False},
        "evaluation": {
            "metric": "mAP50_95",
            "decision": "Rejected",
            "reason": "mAP50_95 0.4125 is worse than champion v2 0.4500 by 0.0375",
            "challenger": {"version": 3, "metrics": {"mAP50_95": 0.4125}, "perClass": {}},
            "champion": {
                "version": 2,
                "metrics": {"mAP50_95": 0.45},
                "perClass": {"circle": {"mAP50_95": 0.5}},
                "previous": {"holdoutSha256": "ab", "metrics": {"mAP50_95": 0.44}},
            },
        },
        "conditions": [
            {
                "type": "Complete",
                "status": "True",
                "reason": "TrainingComplete",
                "message": "3 epochs",
                "observedGeneration": 1,
                "lastTransitionTime": "2026-11-27T05:00:00Z",
            },
            {
                "type": "Verified",
                "status": "True",
                "reason": "AllLocationsVerified",
                "message": "5 locations",
                "observedGeneration": 1,
                "lastTransitionTime": "2026-11-27T05:00:01Z",
            },
        ],
    }
}


def patch_status(
    kubectl: Kubectl, namespace: str, status: dict[str, Any], check: bool = True
) -> subprocess.CompletedProcess[str]:
    return kubectl(
        "patch", "retrainjob", "shapes-minimal", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps(status), check=check,
    )  # fmt: skip


def table(kubectl: Kubectl, namespace: str, *extra: str) -> dict[str, str]:
    out = kubectl("get", "retrainjobs", "-n", namespace, *extra).stdout.splitlines()
    header, row = out[0], out[1]
    # Columns are separated by at least two spaces; headers themselves contain one at most.
    names = re.split(r"\s{2,}", header.strip())
    starts = [header.index(n) for n in names] + [None]
    return {n: row[starts[i] : starts[i + 1]].strip() for i, n in enumerate(names)}


def test_status_patch_shows_in_the_printer_columns(
    kubectl: Kubectl,
    crd: str,  # noqa: F811
    namespace: str,
) -> None:
    apply(kubectl, namespace, MINIMAL)
    patch_status(kubectl, namespace, STATUS)
    columns = table(kubectl, namespace)
    assert list(columns) == [
        "NAME", "MODEL", "VERSION", "PHASE", "EPOCH", "MAP50-95", "VERIFIED", "DECISION", "AGE",
    ]  # fmt: skip
    assert columns["MODEL"] == "shapes"
    assert columns["VERSION"] == "3"
    assert columns["PHASE"] == "Succeeded"
    assert columns["EPOCH"] == "3/3"
    assert columns["MAP50-95"] == "0.4125"
    assert columns["VERIFIED"] == "True"
    assert columns["DECISION"] == "Rejected"
    wide = table(kubectl, namespace, "-o", "wide")
    assert wide["JOB"] == "retrain-shapes-v3"
    assert wide["MLFLOW RUN"] == "0123456789abcdef"


def test_status_cannot_be_written_through_the_main_resource(
    kubectl: Kubectl,
    crd: str,  # noqa: F811
    namespace: str,
) -> None:
    apply(kubectl, namespace, MINIMAL)
    kubectl(
        "patch", "retrainjob", "shapes-minimal", "-n", namespace, "--type=merge",
        "-p", json.dumps({"status": {"phase": "Succeeded"}}),
    )  # fmt: skip
    assert "status" not in get(kubectl, namespace, "shapes-minimal")


def test_status_with_an_unknown_phase_is_rejected(
    kubectl: Kubectl,
    crd: str,  # noqa: F811
    namespace: str,
) -> None:
    apply(kubectl, namespace, MINIMAL)
    result = patch_status(kubectl, namespace, {"status": {"phase": "Done"}}, check=False)
    assert result.returncode != 0
    assert "status.phase" in result.stderr


def test_unknown_status_fields_are_pruned(
    kubectl: Kubectl,
    crd: str,  # noqa: F811
    namespace: str,
) -> None:
    apply(kubectl, namespace, MINIMAL)
    patch_status(kubectl, namespace, {"status": {"phase": "Pending", "kopf": {"progress": {}}}})
    assert get(kubectl, namespace, "shapes-minimal")["status"] == {"phase": "Pending"}


def test_every_invalid_manifest_is_otherwise_a_retrainjob_or_a_modelline() -> None:
    # Guards against a manifest rejected for a reason other than the one it documents.
    for path in INVALID:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert doc["apiVersion"] == "retrainer.dev/v1alpha1", path.name
        assert doc["kind"] == ("ModelLine" if path.name.startswith("ml-") else "RetrainJob")
        assert doc["metadata"]["name"], path.name
