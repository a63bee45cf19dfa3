"""Structural checks on the RetrainJob CRD that need no apiserver.

The apiserver enforces what it can when the CRD is applied (tests/integration); these checks
catch the rest early: undocumented fields, untyped fields, defaults that break their own
constraints, CEL messages that do not name their field, and examples using unknown fields.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "retrainer.dev_retrainjobs.yaml"
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))

Schema = dict[str, Any]


def crd() -> Schema:
    doc: Schema = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    return doc


def version() -> Schema:
    versions: list[Schema] = crd()["spec"]["versions"]
    assert len(versions) == 1, "update these tests when a second version is served"
    return versions[0]


def root() -> Schema:
    schema: Schema = version()["schema"]["openAPIV3Schema"]
    return schema


def nodes(schema: Schema, path: str) -> Iterator[tuple[str, Schema]]:
    """Every schema node below (and including) ``schema``, with its dotted path."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}.<key>")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")


def all_nodes() -> list[tuple[str, Schema]]:
    return list(nodes(root(), "root"))[1:]


def test_every_field_has_a_description() -> None:
    # The apiserver forbids anything but `type` on metadata: it documents it itself.
    missing = [
        path
        for path, node in all_nodes()
        if path != "root.metadata" and not node.get("description", "").strip()
    ]
    assert missing == []


def test_every_spec_field_has_a_type() -> None:
    untyped = [
        path
        for path, node in nodes(root()["properties"]["spec"], "spec")
        if "type" not in node
        and not node.get("x-kubernetes-int-or-string")
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert untyped == []


def test_required_fields_are_declared_properties() -> None:
    for path, node in all_nodes():
        for name in node.get("required", []):
            assert name in node.get("properties", {}), f"{path} requires undeclared {name}"


def test_defaults_satisfy_their_own_constraints() -> None:
    checked = 0
    for path, node in all_nodes():
        if "default" not in node:
            continue
        value = node["default"]
        checked += 1
        if "enum" in node:
            assert value in node["enum"], path
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert node.get("minimum", value) <= value <= node.get("maximum", value), path
        if isinstance(value, str) and "pattern" in node:
            assert re.search(node["pattern"], value), path
        if node.get("type") == "object":
            assert value == {}, f"{path}: object defaults stay {{}} so nested defaults apply"
    assert checked >= 10


def test_every_cel_rule_message_names_its_field() -> None:
    rules = 0
    for path, node in nodes(root(), "root"):
        for validation in node.get("x-kubernetes-validations", []):
            where = (path + validation.get("fieldPath", "")).removeprefix("root")
            where = where.removeprefix(".") or "metadata.name"  # root rules: only name there
            field = re.sub(r"(\[\]|\.<key>)+$", "", where)
            rules += 1
            assert validation.get("message"), f"{path}: rule without a message"
            assert field in validation["message"], f"{path}: message does not name {field}"
    assert rules >= 15


def test_immutability_rule_sits_on_the_whole_spec() -> None:
    rules = [v["rule"] for v in root()["properties"]["spec"]["x-kubernetes-validations"]]
    assert "self == oldSelf" in rules


def test_cel_rules_on_strings_and_collections_are_bounded() -> None:
    # Unbounded inputs make the apiserver's CEL cost estimate exceed its limit.
    for path, node in all_nodes():
        if not node.get("x-kubernetes-validations") or path == "root.spec":
            continue
        if node.get("type") == "string" or node.get("x-kubernetes-int-or-string"):
            assert "maxLength" in node, f"{path}: CEL on a string without maxLength"
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, f"{path}: CEL on a map without maxProperties"


def extra_args() -> Schema:
    training = root()["properties"]["spec"]["properties"]["training"]
    schema: Schema = training["properties"]["extraArgs"]
    return schema


def ultralytics_train_defaults() -> dict[str, Any]:
    # Located without importing ultralytics (which would pull in torch).
    spec = importlib.util.find_spec("ultralytics")
    assert spec is not None and spec.origin is not None
    cfg = Path(spec.origin).parent / "cfg" / "default.yaml"
    defaults: dict[str, Any] = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    return defaults


def test_extra_args_declare_each_argument_with_one_scalar_type() -> None:
    props = extra_args()["properties"]
    assert len(props) >= 40
    for name, node in props.items():
        assert node["type"] in {"number", "integer", "string", "boolean"}, name
    assert {props["lr0"]["type"], props["optimizer"]["type"], props["cos_lr"]["type"]} == {
        "number",
        "string",
        "boolean",
    }


def test_extra_args_are_real_ultralytics_train_arguments() -> None:
    known = ultralytics_train_defaults()
    unknown = [name for name in extra_args()["properties"] if name not in known]
    assert unknown == []


def test_extra_args_leave_out_what_retrainer_manages() -> None:
    managed = {"data", "model", "epochs", "imgsz", "batch", "patience", "seed", "device"}
    managed |= {"project", "name", "resume", "val", "exist_ok", "save"}
    assert managed.isdisjoint(extra_args()["properties"])
    for name in managed - {"save", "exist_ok"}:
        assert name in extra_args()["description"]


def test_printer_columns_match_the_documented_table() -> None:
    columns = {c["name"].upper(): c for c in version()["additionalPrinterColumns"]}
    always = [n for n, c in columns.items() if c.get("priority", 0) == 0]
    wide = [n for n, c in columns.items() if c.get("priority", 0) > 0]
    assert always == [
        "MODEL", "VERSION", "PHASE", "EPOCH", "MAP50-95", "VERIFIED", "DECISION", "AGE"
    ]  # fmt: skip
    assert wide == ["JOB", "MLFLOW RUN"]
    assert columns["VERIFIED"]["jsonPath"] == '.status.conditions[?(@.type=="Verified")].status'
    assert columns["DECISION"]["jsonPath"] == ".status.evaluation.decision"


def test_status_is_a_subresource() -> None:
    assert version()["subresources"] == {"status": {}}


def unknown_fields(value: Any, schema: Schema, path: str) -> Iterator[str]:
    if isinstance(value, dict) and "properties" in schema:
        for key, child in value.items():
            if key not in schema["properties"]:
                yield f"{path}.{key}"
            else:
                yield from unknown_fields(child, schema["properties"][key], f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from unknown_fields(item, schema["items"], f"{path}[{i}]")


def retrainjob_examples() -> list[Path]:
    found = []
    for path in EXAMPLES:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        if any(d and d.get("kind") == "RetrainJob" for d in docs):
            found.append(path)
    return found


def test_there_is_a_retrainjob_example_for_each_documented_use() -> None:
    names = {p.relative_to(ROOT / "examples").as_posix() for p in retrainjob_examples()}
    assert {"cpu-minimal.yaml", "gpu-promotion-kueue.yaml"} <= names
    assert "retrain-latest-corrections.yaml" in names
    assert any(n.startswith("gitops/") for n in names)


@pytest.mark.parametrize("path", retrainjob_examples(), ids=lambda p: p.name)
def test_example_uses_only_fields_the_schema_declares(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        obj = {k: v for k, v in doc.items() if k != "metadata"}
        assert list(unknown_fields(obj, root(), "")) == []
        assert "namespace" not in doc["metadata"], "examples apply to any namespace"
