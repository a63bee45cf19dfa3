"""Every RetrainJob and ModelLine in examples/ is admitted by a real apiserver with strict field
validation, keeps its values as written, and re-applying it changes nothing (as Argo CD would)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_fixture import Kubectl, crd  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


KINDS = {"RetrainJob": "retrainjob", "ModelLine": "modelline"}


def retrainjob_files() -> list[Path]:
    found = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        docs = yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if any(d and d.get("kind") in KINDS for d in docs):
            found.append(path)
    return found


def contained(written: Any, stored: Any) -> bool:
    """True when every value written is stored unchanged (the apiserver may add defaults)."""
    if isinstance(written, dict):
        return isinstance(stored, dict) and all(
            k in stored and contained(v, stored[k]) for k, v in written.items()
        )
    if isinstance(written, list):
        return (
            isinstance(stored, list)
            and len(written) == len(stored)
            and all(contained(w, s) for w, s in zip(written, stored, strict=True))
        )
    if isinstance(written, bool) or isinstance(stored, bool):
        return written is stored
    if isinstance(written, int | float):
        # YAML 1.0 travels as JSON 1: the number is kept, not its spelling.
        return isinstance(stored, int | float) and written == stored
    return bool(written == stored and type(written) is type(stored))


def test_the_examples_folder_has_the_documented_retrainjobs() -> None:
    names = {p.relative_to(EXAMPLES).as_posix() for p in retrainjob_files()}
    assert {
        "cpu-minimal.yaml",
        "gpu-promotion-kueue.yaml",
        "retrain-latest-corrections.yaml",
        "modelline-weekly.yaml",
        "modelline-corrections.yaml",
    } <= names
    assert any(name.startswith("gitops/retrainjobs/") for name in names)


@pytest.mark.parametrize(
    "path", retrainjob_files(), ids=lambda p: p.relative_to(EXAMPLES).as_posix()
)
def test_example_is_admitted_strictly_and_stored_as_written(
    kubectl: Kubectl,
    crd: str,  # noqa: F811
    namespace: str,
    path: Path,
) -> None:
    applied = kubectl("apply", "--validate=strict", "-n", namespace, "-f", str(path))
    assert "created" in applied.stdout
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        name = doc["metadata"]["name"]
        stored = json.loads(
            kubectl("get", KINDS[doc["kind"]], name, "-n", namespace, "-o", "json").stdout
        )
        assert contained(doc["spec"], stored["spec"])
    again = kubectl("apply", "--validate=strict", "-n", namespace, "-f", str(path))
    assert "unchanged" in again.stdout
