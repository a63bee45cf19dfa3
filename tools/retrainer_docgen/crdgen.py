"""Fill the generated parts of the ModelLine CRD, so it never drifts from what it repeats.

A ModelLine's `spec.template` is a RetrainJob spec without `model`: rather than a second
hand-kept copy, it is the RetrainJob CRD's own spec schema (crds/retrainer.dev_retrainjobs.yaml,
the one source) with `model` and the spec-wide immutability rule taken out (a template may
change; each RetrainJob it starts is immutable). The cron grammar and the IANA time-zone list
are admission rules too long to keep by hand. Each generated part sits between
`# BEGIN generated: <part>` and `# END generated: <part>` lines; everything else in the file is
hand-written. tests/unit/test_crd_generated.py fails when a fresh generation differs.

Usage: ``python -m retrainer_docgen.crdgen`` (rewrites crds/retrainer.dev_modellines.yaml).
"""

from __future__ import annotations

import copy
import re
import sys
import zoneinfo
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CRON_PATTERN", "TIME_ZONES", "generate", "template_schema"]

ROOT = Path(__file__).resolve().parents[2]
RETRAINJOBS = ROOT / "crds" / "retrainer.dev_retrainjobs.yaml"
MODELLINES = ROOT / "crds" / "retrainer.dev_modellines.yaml"

_MARKER = re.compile(r"^(?P<indent> *)# BEGIN generated: (?P<part>[a-z]+)")

# One cron field: `*` or a value or a range, each with an optional /step, comma-separated.
_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"
_VALUES = {
    "minute": "[0-5]?[0-9]",
    "hour": "[01]?[0-9]|2[0-3]",
    "day of month": "0?[1-9]|[12][0-9]|3[01]",
    "month": f"0?[1-9]|1[0-2]|{_MONTHS}",
    "day of week": f"[0-7]|{_DAYS}",
}
MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def _field(values: str) -> str:
    element = rf"([*]|({values})(-({values}))?)(/[1-9][0-9]?)?"
    return f"{element}(,{element})*"


CRON_PATTERN = (
    "^((" + "|".join(MACROS) + ")|" + " +".join(f"({_field(v)})" for v in _VALUES.values()) + ")$"
)

# zoneinfo's names, less the ones that are files of the database and not zones.
TIME_ZONES = tuple(
    sorted(
        zone
        for zone in zoneinfo.available_timezones()
        if zone not in {"Factory", "localtime", "posixrules"}
    )
)


def template_schema(retrainjobs: dict[str, Any]) -> dict[str, Any]:
    """The RetrainJob spec schema without `model` and without the whole-spec immutability."""
    root = retrainjobs["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = copy.deepcopy(root["properties"]["spec"])
    spec["properties"].pop("model")
    spec["required"] = [name for name in spec.get("required", []) if name != "model"]
    rules = spec.get("x-kubernetes-validations", [])
    spec["x-kubernetes-validations"] = [rule for rule in rules if rule["rule"] != "self == oldSelf"]
    spec["description"] = (
        "The RetrainJob spec (without model) of the runs the line starts; validated like a "
        "RetrainJob's spec (crds/retrainer.dev_retrainjobs.yaml)."
    )
    return dict(spec)


def _parts(retrainjobs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    zones = ", ".join(f"'{zone}'" for zone in TIME_ZONES)
    return {
        "template": {
            key: value for key, value in template_schema(retrainjobs).items() if key != "type"
        },
        "cron": {
            "x-kubernetes-validations": [
                {
                    "rule": f"self.matches('{CRON_PATTERN}')",
                    "message": (
                        "spec.schedule.cron must be five cron fields (minute 0-59, hour 0-23, "
                        "day of month 1-31, month 1-12 or JAN-DEC, day of week 0-7 or SUN-SAT; "
                        "each *, N, N-M or a list of them, with an optional /step), "
                        'for example "0 3 * * MON", or one of ' + ", ".join(MACROS)
                    ),
                }
            ]
        },
        "timezone": {
            "x-kubernetes-validations": [
                {
                    "rule": f"self in [{zones}]",
                    "message": (
                        "spec.schedule.timeZone must be an IANA time zone name such as UTC, "
                        "Europe/Berlin or America/New_York (see the tz database)"
                    ),
                }
            ]
        },
    }


def _dump(value: dict[str, Any], indent: str) -> list[str]:
    text = yaml.safe_dump(value, sort_keys=False, width=100, allow_unicode=True)
    return [f"{indent}{line}" if line else line for line in text.splitlines()]


def generate(source: str, retrainjobs: dict[str, Any]) -> str:
    """`source` (the ModelLine CRD text) with every generated part filled in afresh."""
    parts = _parts(retrainjobs)
    out: list[str] = []
    lines = source.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        out.append(line)
        match = _MARKER.match(line)
        index += 1
        if match is None:
            continue
        part, indent = match.group("part"), match.group("indent")
        end = f"{indent}# END generated: {part}"
        while index < len(lines) and lines[index] != end:
            index += 1
        if index == len(lines):
            raise ValueError(f"no `{end.strip()}` after the BEGIN marker of {part}")
        out.extend(_dump(parts[part], indent))
        out.append(end)
        index += 1
    return "\n".join(out) + "\n"


def main() -> int:
    retrainjobs = yaml.safe_load(RETRAINJOBS.read_text(encoding="utf-8"))
    MODELLINES.write_text(
        generate(MODELLINES.read_text(encoding="utf-8"), retrainjobs), encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
