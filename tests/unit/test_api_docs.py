"""docs/api.md is generated from the CRD; these tests fail when it drifts or misses a field."""

from __future__ import annotations

from pathlib import Path

import yaml
from retrainer_docgen import apidocs

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "retrainer.dev_retrainjobs.yaml"
API_MD = ROOT / "docs" / "api.md"


def generate() -> str:
    return apidocs.render(apidocs.load_crd(CRD), "crds/retrainer.dev_retrainjobs.yaml")


def test_api_md_matches_a_fresh_generation_from_the_crd() -> None:
    assert API_MD.read_text(encoding="utf-8") == generate(), (
        "docs/api.md is stale: run `make crds-sync` (or "
        "`.venv/bin/python -m retrainer_docgen.apidocs crds/retrainer.dev_retrainjobs.yaml"
        " > docs/api.md`)"
    )


def test_the_modelline_reference_matches_a_fresh_generation() -> None:
    source = "crds/retrainer.dev_modellines.yaml"
    fresh = apidocs.render(apidocs.load_crd(ROOT / source), source)
    assert (ROOT / "docs" / "api-modelline.md").read_text(encoding="utf-8") == fresh, (
        "docs/api-modelline.md is stale: run `make crds-sync`"
    )


def test_every_spec_and_status_field_has_a_row() -> None:
    page = generate()
    schema = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    root = schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for section in ("spec", "status"):
        for field in apidocs.walk(root["properties"][section], section):
            assert f"| `{field.path}` |" in page


def test_rows_carry_type_default_and_constraints() -> None:
    page = generate()
    assert "| `spec.training.epochs` | integer | `10` | 1 to 10000 |" in page
    assert '| `spec.resources.cpu` | int or string | `"1"` |' in page
    assert "spec.training.imgsz must be a multiple of 32" in page
    assert "| `spec.model` | string |  | required;" in page


def test_printer_columns_are_documented_with_their_visibility() -> None:
    page = generate()
    assert "| MLFLOW RUN | `.status.mlflow.runId` | `-o wide` |" in page
    assert "| PHASE | `.status.phase` | always |" in page


def test_pipes_in_patterns_do_not_break_the_table() -> None:
    for line in generate().splitlines():
        if line.startswith("| `spec.baseModel.version`"):
            assert "latest\\|champion\\|[1-9]" in line
            break
    else:
        raise AssertionError("no row for spec.baseModel.version")


def test_a_file_that_is_not_a_crd_is_refused_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-crd.yaml"
    bad.write_text("kind: ConfigMap\n", encoding="utf-8")
    try:
        apidocs.load_crd(bad)
    except SystemExit as exc:
        assert "not-a-crd.yaml" in str(exc)
    else:
        raise AssertionError("load_crd accepted a ConfigMap")
