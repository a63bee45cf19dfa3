"""A schedule survives its clock stepping back, against the real operator.

Time is the operator's clock hook (RETRAINER_CLOCK_FILE, clock.py): the test writes the time,
the operator reads it on every line pass (RETRAINER_LINE_INTERVAL=1). The runs carry a Kueue
queue name, so their Jobs stay suspended (no Kueue here): nothing trains.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from operator_support import (
    GROUP,
    LINE_PLURAL,
    PLURAL,
    QUEUED_TEMPLATE,
    VERSION,
    get_line,
    prepare_namespace,
    running_operator,
    wait_for,
)
from retrainer_contract import api
from retrainer_world.world import World

pytestmark = pytest.mark.integration

TEMPLATE = QUEUED_TEMPLATE
HOUR = datetime.timedelta(hours=1)


def iso(value: datetime.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def set_clock(path: Path, value: datetime.datetime) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(iso(value), encoding="utf-8")
    tmp.replace(path)


def scheduled_runs(kube: client.ApiClient, namespace: str) -> list[str]:
    items = client.CustomObjectsApi(kube).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, label_selector=f"{api.LABEL_TRIGGER}=schedule"
    )["items"]
    return sorted(item["metadata"]["name"] for item in items)


def test_a_clock_stepped_back_a_day_does_not_stall_the_schedule(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    now = datetime.datetime.now(datetime.UTC).replace(minute=0, second=0, microsecond=0)
    first, clock = now + HOUR, tmp_path / "clock"
    set_clock(clock, first + datetime.timedelta(seconds=5))
    prepare_namespace(kube, namespace)
    line = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelLine",
        "metadata": {"name": "shapes"},
        "spec": {
            "template": TEMPLATE,
            "schedule": {"cron": "0 * * * *", "concurrencyPolicy": "Allow"},
        },
    }
    client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, LINE_PLURAL, line
    )
    env = {"RETRAINER_CLOCK_FILE": str(clock), "RETRAINER_LINE_INTERVAL": "1"}

    def status() -> dict[str, Any]:
        return dict(get_line(kube, namespace, "shapes").get("status") or {})

    with running_operator(world, namespace, tmp_path, **env) as operator:
        wait_for(
            "the first slot started",
            lambda: len(scheduled_runs(kube, namespace)) == 1,
            60,
            operator,
        )
        back = first - 24 * HOUR  # fault point: the clock steps back a day
        set_clock(clock, back + datetime.timedelta(minutes=10))
        wait_for(
            "the schedule resynced to the stepped-back clock",
            lambda: status().get("lastScheduleTime") == iso(back),
            60,
            operator,
        )
        assert status().get("nextRunTime") == iso(back + HOUR)
        set_clock(clock, back + HOUR + datetime.timedelta(seconds=5))
        wait_for(
            "the next slot on the stepped-back clock started",
            lambda: len(scheduled_runs(kube, namespace)) == 2,
            60,
            operator,
        )
    key = (back + HOUR).strftime("%Y%m%d%H%M")
    assert f"shapes-schedule-{key}" in scheduled_runs(kube, namespace)
