"""Generate docs/api.md from the RetrainJob CRD, so the reference can never drift from the API.

The CRD in crds/ is the single source of truth for field names, types, defaults and admission
rules; this module walks its OpenAPI schema and renders one Markdown table per top-level section
(spec, status), the printer columns and the CEL rules. tests/unit/test_api_docs.py regenerates
the page and fails when the checked-in docs/api.md differs.

Usage: ``python -m retrainer_docgen.apidocs crds/retrainer.dev_retrainjobs.yaml > docs/api.md``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Field", "Rule", "load_crd", "render", "walk"]

Schema = dict[str, Any]


@dataclass(frozen=True)
class Rule:
    """One CEL rule (x-kubernetes-validations entry) and the field it is attached to."""

    path: str
    rule: str
    message: str


@dataclass(frozen=True)
class Field:
    """One documented field: its dotted path and what the schema says about it."""

    path: str
    type: str
    default: str
    constraints: list[str] = field(default_factory=list)
    description: str = ""


def load_crd(path: Path) -> Schema:
    """Read a CRD file; exits with a message naming the file when it is not a CRD."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"apidocs: cannot read CRD {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
        raise SystemExit(f"apidocs: {path} is not a CustomResourceDefinition (kind missing)")
    return doc


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _cell(text: str) -> str:
    # Pipes would end the Markdown table cell early.
    return _one_line(text).replace("|", "\\|")


def _code(value: Any) -> str:
    # JSON keeps "1" (a string) apart from 1 (a number), as the apiserver does.
    return f"`{json.dumps(value)}`"


def _type_of(schema: Schema) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "int or string"
    kind = schema.get("type")
    if kind is None:
        return "any" if schema.get("x-kubernetes-preserve-unknown-fields") else "object"
    if kind == "array":
        return f"array of {_type_of(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema and "properties" not in schema:
        return f"map of {_type_of(schema['additionalProperties'])}"
    fmt = schema.get("format")
    return f"{kind} ({fmt})" if fmt else str(kind)


def _constraints(schema: Schema, required: bool) -> list[str]:
    out: list[str] = []
    if required:
        out.append("required")
    if "enum" in schema:
        out.append("one of " + ", ".join(_code(v) for v in schema["enum"]))
    low, high = schema.get("minimum"), schema.get("maximum")
    if schema.get("exclusiveMinimum") and low is not None:
        out.append(f"more than {low}" + (f", at most {high}" if high is not None else ""))
    elif low is not None and high is not None:
        out.append(f"{low} to {high}")
    elif low is not None:
        out.append(f"at least {low}")
    elif high is not None:
        out.append(f"at most {high}")
    for key, label in (
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("maxItems", "max items"),
        ("maxProperties", "max entries"),
    ):
        if key in schema:
            out.append(f"{label} {schema[key]}")
    if "pattern" in schema:
        out.append(f"matches `{schema['pattern']}`")
    for validation in schema.get("x-kubernetes-validations", []):
        if validation.get("rule") == "self == oldSelf":
            out.append("immutable")
        else:
            out.append(_one_line(validation.get("message", validation["rule"])))
    return out


def walk(schema: Schema, path: str, required: bool = False) -> Iterator[Field]:
    """Yield ``schema`` itself (as ``path``) and every field below it, depth first."""
    default = _code(schema["default"]) if "default" in schema else ""
    yield Field(
        path=path,
        type=_type_of(schema),
        default=default,
        constraints=_constraints(schema, required),
        description=_one_line(schema.get("description", "")),
    )
    needed = set(schema.get("required", []))
    for name, child in schema.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}", name in needed)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and "properties" not in schema:
        yield from walk(extra, f"{path}.<key>")
    items = schema.get("items")
    if isinstance(items, dict) and "properties" in items:
        yield from walk(items, f"{path}[]")


def rules(schema: Schema, path: str) -> Iterator[Rule]:
    """Yield every CEL rule below ``schema`` with the path of the field that carries it."""
    for validation in schema.get("x-kubernetes-validations", []):
        # fieldPath is where the apiserver reports the error; show the field it names.
        # Rules on the object itself can only read metadata.name (and generateName).
        where = (path + validation.get("fieldPath", "")).lstrip(".") or "metadata.name"
        yield Rule(where, _one_line(validation["rule"]), _one_line(validation.get("message", "")))
    for name, child in schema.get("properties", {}).items():
        yield from rules(child, f"{path}.{name}")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield from rules(extra, f"{path}.<key>")
    items = schema.get("items")
    if isinstance(items, dict):
        yield from rules(items, f"{path}[]")


def _table(fields: list[Field]) -> list[str]:
    lines = [
        "| field | type | default | constraints | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in fields:
        constraints = "; ".join(f.constraints)
        lines.append(
            f"| `{f.path}` | {_cell(f.type)} | {_cell(f.default)} | {_cell(constraints)} "
            f"| {_cell(f.description)} |"
        )
    return lines


def render(crd: Schema, source: str) -> str:
    """The whole Markdown page for ``crd`` (read from ``source``, named in the header)."""
    names = crd["spec"]["names"]
    group = crd["spec"]["group"]
    out: list[str] = []
    for version in crd["spec"]["versions"]:
        root = version["schema"]["openAPIV3Schema"]
        out += [
            f"# {names['kind']} API reference ({group}/{version['name']})",
            "",
            f"<!-- Generated from {source} by `python -m retrainer_docgen.apidocs`;"
            " do not edit by hand: run `make crds-sync`. -->",
            "",
            _one_line(root.get("description", "")),
            "",
            f"- Kind `{names['kind']}`, plural `{names['plural']}`, short names "
            + ", ".join(f"`{s}`" for s in names.get("shortNames", []))
            + f", scope {crd['spec']['scope']}.",
            "- The status is written only through the `status` subresource.",
            "",
            "## `kubectl get` columns",
            "",
            "| column | from | shown |",
            "| --- | --- | --- |",
        ]
        for column in version.get("additionalPrinterColumns", []):
            shown = "`-o wide`" if column.get("priority", 0) > 0 else "always"
            out.append(f"| {column['name'].upper()} | `{_cell(column['jsonPath'])}` | {shown} |")
        for section in ("spec", "status"):
            schema = root["properties"][section]
            out += ["", f"## {section}", "", _one_line(schema.get("description", "")), ""]
            out += _table(list(walk(schema, section, section in root.get("required", []))))
        out += [
            "",
            "## Admission rules (CEL)",
            "",
            "Checked by the apiserver on create and update; the message is what `kubectl` prints.",
            "",
            "| field | rule | message |",
            "| --- | --- | --- |",
        ]
        for r in rules(root, ""):
            out.append(f"| `{r.path}` | `{_cell(r.rule)}` | {_cell(r.message)} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("crd", type=Path, help="path to the CRD YAML")
    args = parser.parse_args(argv)
    sys.stdout.write(render(load_crd(args.crd), f"crds/{args.crd.name}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
