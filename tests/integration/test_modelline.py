"""ModelLine on the real world: the sequence in its status, schedules on a clock the test sets,
the corrections trigger, and versions that outlive their RetrainJobs.

Time is the operator's clock hook (RETRAINER_CLOCK_FILE): the test writes the time, the
operator reads it on every line pass (RETRAINER_LINE_INTERVAL=1), so no test waits for cron.
Runs whose training does not matter carry a Kueue queue name: their Job stays suspended (no
Kueue here), so they stay active without training.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from operator_support import (
    GROUP,
    LINE_PLURAL,
    PLURAL,
    VERSION,
    condition,
    create,
    event_reasons,
    get,
    get_line,
    prepare_namespace,
    retrainjob,
    running_operator,
    upload_dataset,
    wait_accepted,
    wait_for,
    wait_phase,
)
from retrainer_contract import api
from retrainer_demo import shapes
from retrainer_world.world import World

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
QUEUED = {"scheduling": {"queueName": "nowhere"}}
TEMPLATE: dict[str, Any] = {
    "baseModel": {"architecture": "yolo11n.yaml"},
    "dataset": {"uri": "s3://datasets/none"},
    "training": {"epochs": 1, "imgsz": 64, "batch": 4, "extraArgs": {"workers": 0}},
    "resources": {"cpu": "1", "memory": "3Gi"},
    **QUEUED,
}
TEN_MINUTES = datetime.timedelta(minutes=10)


def iso(value: datetime.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def set_clock(path: Path, value: datetime.datetime) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(iso(value), encoding="utf-8")
    tmp.replace(path)  # the operator never reads half a time


def first_slot() -> datetime.datetime:
    """The first */10 slot after now (a line created now has no slot due before it)."""
    now = datetime.datetime.now(datetime.UTC).replace(second=0, microsecond=0)
    return now - datetime.timedelta(minutes=now.minute % 10) + TEN_MINUTES


def modelline(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelLine",
        "metadata": {"name": name},
        "spec": spec,
    }


def create_line(kube: client.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, LINE_PLURAL, body
    )


def patch_line(kube: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> None:
    client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, LINE_PLURAL, name, {"spec": spec}
    )


def runs_of(kube: client.ApiClient, namespace: str, trigger: str) -> list[dict[str, Any]]:
    items = client.CustomObjectsApi(kube).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, label_selector=f"{api.LABEL_TRIGGER}={trigger}"
    )["items"]
    return sorted(items, key=lambda item: item["metadata"]["name"])


def line_status(kube: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return dict(get_line(kube, namespace, name).get("status") or {})


def line_events(kube: client.ApiClient, namespace: str, name: str) -> list[str]:
    return event_reasons(kube, namespace, name, kind="ModelLine")


def clock_env(clock: Path) -> dict[str, str]:
    return {"RETRAINER_CLOCK_FILE": str(clock), "RETRAINER_LINE_INTERVAL": "1"}


def test_a_schedule_starts_exactly_one_run_per_slot_across_an_operator_sigkill(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    clock, slot = tmp_path / "clock", first_slot()
    set_clock(clock, datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2))
    prepare_namespace(kube, namespace)
    schedule = {"cron": "*/10 * * * *", "concurrencyPolicy": "Allow"}
    create_line(kube, namespace, modelline("shapes", template=TEMPLATE, schedule=schedule))
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    killed_at = "after-run-create"  # the run exists, the line does not record its slot yet
    with running_operator(
        world, namespace, tmp_path / "a", RETRAINER_FAULT_POINT=killed_at, **clock_env(clock)
    ) as operator:
        wait_for(
            "the first slot announced",
            lambda: line_status(kube, namespace, "shapes").get("nextRunTime") == iso(slot),
            60,
            operator,
        )
        set_clock(clock, slot + datetime.timedelta(seconds=5))
        assert operator.proc is not None
        assert operator.proc.wait(timeout=60) == -9  # SIGKILLed at the fault point
    (run,) = runs_of(kube, namespace, "schedule")
    key = slot.strftime("%Y%m%d%H%M")
    assert run["metadata"]["name"] == f"shapes-schedule-{key}"
    assert run["metadata"]["annotations"][api.SCHEDULED_TIME_ANNOTATION] == iso(slot)
    assert line_status(kube, namespace, "shapes").get("lastScheduleTime") != iso(slot)

    with running_operator(world, namespace, tmp_path / "b", **clock_env(clock)) as operator:
        wait_for(
            "the slot recorded after the restart",
            lambda: line_status(kube, namespace, "shapes").get("lastScheduleTime") == iso(slot),
            60,
            operator,
        )
        assert len(runs_of(kube, namespace, "schedule")) == 1  # the restart found it
        second = slot + TEN_MINUTES
        set_clock(clock, second + datetime.timedelta(seconds=5))
        wait_for(
            "the second slot started",
            lambda: line_status(kube, namespace, "shapes").get("lastScheduleTime") == iso(second),
            60,
            operator,
        )
        runs = runs_of(kube, namespace, "schedule")
        names = [r["metadata"]["name"] for r in runs]
        accepted = wait_accepted(kube, namespace, names, 60, operator)
    assert len(runs) == 2
    assert sorted(r["status"]["version"] for r in accepted) == [1, 2]
    assert all(r["spec"]["model"] == "shapes" for r in accepted)
    status = line_status(kube, namespace, "shapes")
    assert status["nextRunTime"] == iso(second + TEN_MINUTES)
    assert status["latestVersion"] == 2
    assert line_events(kube, namespace, "shapes").count("RunStarted") >= 2


def late_ticking_name(namespace: str, interval: float, margin: float) -> str:
    """A line name whose first clock tick (spread over the interval by name, line_ticks.py)
    comes more than `margin` seconds after the operator starts."""
    for index in range(1000):
        name = f"late-{index}"
        spread = (zlib.crc32(f"{namespace}/{name}".encode()) % 1000) / 1000 * interval
        if spread > margin:
            return name
    raise AssertionError("no name ticks late enough")


def test_a_spec_change_is_acted_on_at_once_not_at_the_lines_next_tick(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    # A ten-minute line clock: only the line watch's events (a line seen for the first time,
    # a new generation of its spec: first_sight.py) can act within the minute.
    interval, within = 600.0, 60.0
    name = late_ticking_name(namespace, interval, 3 * within)
    prepare_namespace(kube, namespace)
    yearly = {"cron": "0 0 1 1 *"}  # no slot falls in the test
    create_line(kube, namespace, modelline(name, template=TEMPLATE, schedule=yearly))
    env = {"RETRAINER_LINE_INTERVAL": str(interval)}
    with running_operator(world, namespace, tmp_path, **env) as operator:
        wait_for(
            "the new line's first pass",
            lambda: "nextRunTime" in line_status(kube, namespace, name),
            within,
            operator,
        )
        patch_line(kube, namespace, name, {"schedule": {**yearly, "suspend": True}})
        wait_for(
            "the suspended schedule's next run dropped",
            lambda: "nextRunTime" not in line_status(kube, namespace, name),
            within,
            operator,
        )
        patch_line(kube, namespace, name, {"schedule": {**yearly, "suspend": False}})
        wait_for(
            "the resumed schedule's next run back",
            lambda: "nextRunTime" in line_status(kube, namespace, name),
            within,
            operator,
        )


def test_forbid_skips_a_slot_while_a_run_is_active_and_suspend_stops_runs(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    clock, slot = tmp_path / "clock", first_slot()
    set_clock(clock, slot + datetime.timedelta(seconds=5))
    prepare_namespace(kube, namespace)
    create_line(
        kube, namespace, modelline("shapes", template=TEMPLATE, schedule={"cron": "*/10 * * * *"})
    )

    def handled(at: datetime.datetime) -> bool:
        return line_status(kube, namespace, "shapes").get("lastScheduleTime") == iso(at)

    with running_operator(world, namespace, tmp_path, **clock_env(clock)) as operator:
        wait_for("the first slot started", lambda: handled(slot), 60, operator)
        (first,) = runs_of(kube, namespace, "schedule")
        wait_accepted(kube, namespace, [first["metadata"]["name"]], 60, operator)  # active

        second = slot + TEN_MINUTES
        set_clock(clock, second + datetime.timedelta(seconds=5))
        wait_for("the second slot handled", lambda: handled(second), 60, operator)
        assert len(runs_of(kube, namespace, "schedule")) == 1  # Forbid: skipped
        assert "SlotSkipped" in line_events(kube, namespace, "shapes")

        patch_line(kube, namespace, "shapes", {"schedule": {"suspend": True}})
        wait_for(
            "no next run while suspended",
            lambda: "nextRunTime" not in line_status(kube, namespace, "shapes"),
            60,
            operator,
        )
        client.CustomObjectsApi(kube).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, first["metadata"]["name"]
        )
        wait_for(
            "the run gone",
            lambda: not runs_of(kube, namespace, "schedule"),
            60,
            operator,
        )
        third = second + TEN_MINUTES
        set_clock(clock, third + datetime.timedelta(seconds=5))
        wait_for("the third slot handled", lambda: handled(third), 60, operator)
        assert runs_of(kube, namespace, "schedule") == []  # suspended: nothing started


def test_a_retrainjob_alone_gets_a_bare_line_and_its_version_outlives_its_deletion(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    prepare_namespace(kube, namespace)
    with running_operator(world, namespace, tmp_path) as operator:
        for name in ("one", "two"):
            create(kube, namespace, retrainjob(name, "s3://datasets/none", **QUEUED))
        accepted = wait_accepted(kube, namespace, ["one", "two"], 60, operator)
        version = {o["metadata"]["name"]: o["status"]["version"] for o in accepted}
        line = get_line(kube, namespace, "shapes")
        assert line["spec"].get("schedule") is None and line["spec"].get("corrections") is None
        assert line["status"]["latestVersion"] == 2
        client.CustomObjectsApi(kube).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "one"
        )
        wait_for(
            "RetrainJob one deleted",
            lambda: (
                [
                    o["metadata"]["name"]
                    for o in client.CustomObjectsApi(kube).list_namespaced_custom_object(
                        GROUP, VERSION, namespace, PLURAL
                    )["items"]
                ]
                == ["two"]
            ),
            60,
            operator,
        )
    listed = {v["version"]: v for v in line_status(kube, namespace, "shapes")["versions"]}
    assert listed[version["one"]]["retrainJob"] == "one"
    assert listed[version["two"]]["retrainJob"] == "two"
    env = {**os.environ, **world.env()}
    shown = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "retrainer"), "versions", "shapes", "-n", namespace],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rows = {line.split()[0]: line for line in shown.splitlines()[2:] if line.strip()}
    one, two = rows[str(version["one"])], rows[str(version["two"])]
    assert "one" in one and "Deleted" in one, shown
    assert "two" in two and "Pending" in two, shown


def test_deleting_the_modelline_recovers_the_sequence_and_reuses_no_number(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    prepare_namespace(kube, namespace)
    custom = client.CustomObjectsApi(kube)
    with running_operator(world, namespace, tmp_path) as operator:
        for name in ("one", "two"):
            create(kube, namespace, retrainjob(name, "s3://datasets/none", **QUEUED))
        wait_accepted(kube, namespace, ["one", "two"], 60, operator)
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, LINE_PLURAL, "shapes")
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "two")
        create(kube, namespace, retrainjob("three", "s3://datasets/none", **QUEUED))
        (three,) = wait_accepted(kube, namespace, ["three"], 60, operator)
    assert three["status"]["version"] == 3  # above every version with evidence
    status = line_status(kube, namespace, "shapes")
    assert status["ledger"]["next"] == "4"
    assert status["latestVersion"] == 3


def test_n_new_corrections_start_one_run_and_pending_returns_to_zero_once_verified(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    dataset = upload_dataset(world, tmp_path, f"{namespace}/shapes")
    folder = tmp_path / f"{namespace}/shapes"
    fixes = tmp_path / "fixes"
    labels = sorted((folder / "labels" / "train").glob("*.txt"))[:3]
    for label in labels:
        target = fixes / "labels" / "train" / label.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(label, target)
    shapes.upload_folder(world.minio_client(), "datasets", f"{namespace}/fixes", fixes)
    template = {k: v for k, v in TEMPLATE.items() if k != "scheduling"}
    template["dataset"] = {"uri": dataset}
    watched = {
        "uri": f"s3://datasets/{namespace}/fixes",
        "minNew": 3,
        "pollIntervalSeconds": 1,
    }
    prepare_namespace(kube, namespace)
    create_line(kube, namespace, modelline("shapes", template=template, corrections=watched))
    with running_operator(world, namespace, tmp_path, RETRAINER_LINE_INTERVAL="1") as operator:
        run = wait_for(
            "a run started by the corrections",
            lambda: runs_of(kube, namespace, "corrections"),
            60,
            operator,
        )[0]
        name = run["metadata"]["name"]
        assert run["spec"]["corrections"] == {"uri": watched["uri"]}
        assert line_status(kube, namespace, "shapes")["pendingCorrections"] == 3
        done = wait_phase(kube, namespace, name, ("Succeeded", "Failed"), 600, operator)
        assert condition(done, "Verified").get("status") == "True", done["status"]
        wait_for(
            "pendingCorrections back to 0",
            lambda: line_status(kube, namespace, "shapes").get("pendingCorrections") == 0,
            60,
            operator,
        )
        assert len(runs_of(kube, namespace, "corrections")) == 1
        assert get(kube, namespace, name)["status"]["version"] == 1
    assert line_status(kube, namespace, "shapes")["latestVerified"] == 1


def test_the_running_operator_scrubs_a_line_on_its_clock_and_reports_a_flipped_byte(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    """The line reconciler wires the scrub in: no direct calls, only the operator's ticks."""
    from upkeep_support import claim_root, experiment, flip_byte, store_version

    root = claim_root(kube, namespace)  # prepares the namespace too
    experiment_id = experiment(world, f"wired-scrub-{namespace}")
    for version in (1, 2):
        store_version(world, root, namespace, "shapes", version, experiment_id)
    clock = tmp_path / "clock"
    start = datetime.datetime.now(datetime.UTC)
    set_clock(clock, start)
    create_line(kube, namespace, modelline("shapes", scrub={"intervalSeconds": 60}))

    def scrubbed() -> dict[str, Any]:
        return condition(get_line(kube, namespace, "shapes"), "Scrubbed")

    with running_operator(world, namespace, tmp_path, **clock_env(clock)) as operator:
        first = wait_for("the first scrub", lambda: scrubbed().get("status"), 120, operator)
        assert first == "True", line_status(kube, namespace, "shapes")
        flip_byte(layout_best(root, 1))
        set_clock(clock, start + datetime.timedelta(seconds=61))  # one interval later
        wait_for(
            "the flipped byte reported",
            lambda: scrubbed().get("status") == "False",
            120,
            operator,
        )
    found = scrubbed()
    assert found["reason"] == "CopyChanged"
    assert "version 1" in found["message"] or "v1" in found["message"], found
    assert "CopyChanged" in line_events(kube, namespace, "shapes")


def layout_best(root: Path, version: int) -> Path:
    from retrainer_contract import layout

    return layout.VersionPaths.for_version(root, "shapes", version).training_run
