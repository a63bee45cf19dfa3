"""The ModelLine CRD's generated parts: never drifting from their sources, and the cron grammar
admission uses agreeing with the parser the operator uses."""

from __future__ import annotations

import datetime
import re
import zoneinfo
from pathlib import Path

import pytest
import yaml
from cronsim import CronSim, CronSimError
from retrainer_docgen import crdgen
from retrainer_operator import schedule

ROOT = Path(__file__).resolve().parents[1].parent
LINES = ROOT / "crds" / "retrainer.dev_modellines.yaml"
JOBS = ROOT / "crds" / "retrainer.dev_retrainjobs.yaml"


def test_the_modelline_crd_matches_a_fresh_generation() -> None:
    retrainjobs = yaml.safe_load(JOBS.read_text(encoding="utf-8"))
    text = LINES.read_text(encoding="utf-8")
    assert crdgen.generate(text, retrainjobs) == text, (
        "crds/retrainer.dev_modellines.yaml is stale: run `make crds-sync`"
    )


def test_the_template_is_the_retrainjob_spec_without_model_and_without_immutability() -> None:
    lines = yaml.safe_load(LINES.read_text(encoding="utf-8"))
    jobs = yaml.safe_load(JOBS.read_text(encoding="utf-8"))
    root = lines["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    template = root["properties"]["spec"]["properties"]["template"]
    job_spec = jobs["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert set(template["properties"]) == set(job_spec["properties"]) - {"model"}
    assert "model" not in template["required"]
    assert all(r["rule"] != "self == oldSelf" for r in template["x-kubernetes-validations"])


VALID = ["0 3 * * MON", "*/15 * * * *", "0 0 1,15 * *", "30 2 * JAN-MAR 1-5", "@daily", "5 4 * * 7"]
INVALID = ["61 * * * *", "0 24 * * *", "0 3 * *", "0 3 32 * *", "* * * 13 *", "every day", ""]


@pytest.mark.parametrize("cron", VALID)
def test_what_admission_accepts_the_operator_can_parse(cron: str) -> None:
    assert re.fullmatch(crdgen.CRON_PATTERN, cron)
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert next(CronSim(schedule.expression(cron), start)) > start


@pytest.mark.parametrize("cron", INVALID)
def test_what_admission_rejects_the_parser_rejects_too(cron: str) -> None:
    assert not re.fullmatch(crdgen.CRON_PATTERN, cron)
    with pytest.raises((CronSimError, StopIteration, ValueError, IndexError)):
        next(CronSim(schedule.expression(cron), datetime.datetime(2026, 1, 1)))


def test_every_admitted_time_zone_loads_in_zoneinfo() -> None:
    assert "UTC" in crdgen.TIME_ZONES and "Europe/Berlin" in crdgen.TIME_ZONES
    for zone in crdgen.TIME_ZONES:
        zoneinfo.ZoneInfo(zone)
