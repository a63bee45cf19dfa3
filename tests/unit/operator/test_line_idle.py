"""A line's tick needs no read when nothing changed since its last pass did nothing (issue 22:
at 1,000 lines the ticks' reads were most of an idle operator's requests)."""

from __future__ import annotations

import datetime
import types
from typing import Any

import pytest
from retrainer_contract import api
from retrainer_operator import champion_sync, job_outcome, line_idle, lines
from retrainer_operator.config import OperatorConfig

from tests.unit.operator.lines_fake import FakeLines

NOW = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)


def quiet(rv: str = "7", listed_at: float = 100.0, minutes: int = 5) -> line_idle.Quiet:
    return line_idle.Quiet(rv, listed_at, NOW, NOW + datetime.timedelta(minutes=minutes))


def test_a_quiet_line_is_skipped_only_while_the_watch_shows_it_unchanged_and_nothing_is_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    idle = line_idle.IdleLines()
    soon = NOW + datetime.timedelta(seconds=10)
    assert not idle.quiet("team", "a", soon)  # nothing recorded: a full pass
    idle.record("team", "a", quiet())
    assert not idle.quiet("team", "a", soon)  # the watch has not shown the line yet
    idle.seen("team", "a", "7")
    assert idle.quiet("team", "a", soon)
    assert not idle.quiet("team", "a", NOW + datetime.timedelta(minutes=5))  # due
    assert not idle.quiet("team", "a", NOW - datetime.timedelta(days=1))  # the clock went back
    assert not idle.quiet("team", "b", soon)  # another line

    idle.seen("team", "a", "8")  # anyone's write: a person's promote, an allocation, Kopf's
    assert not idle.quiet("team", "a", soon)
    idle.record("team", "a", quiet("8"))
    assert idle.quiet("team", "a", soon)

    # An event of one of its RetrainJobs after the listing the pass used was started.
    monkeypatch.setattr(line_idle.time, "monotonic", lambda: 150.0)
    idle.runs_changed("team", "a")
    assert not idle.quiet("team", "a", soon)
    idle.record("team", "a", quiet("8", listed_at=149.0))  # that listing is older still
    assert not idle.quiet("team", "a", soon)
    idle.record("team", "a", quiet("8", listed_at=151.0))  # a listing started after it
    assert idle.quiet("team", "a", soon)
    idle.runs_changed("team", "other-line")
    assert idle.quiet("team", "a", soon)

    idle.record("team", "a", None)  # the last pass did something
    assert not idle.quiet("team", "a", soon)
    idle.record("team", "a", quiet("8", listed_at=151.0))
    idle.seen("team", "a", None)  # deleted: what was recorded goes with it
    idle.seen("team", "a", "8")
    assert not idle.quiet("team", "a", soon)


class Cluster(FakeLines):
    """A namespace's ModelLines, RetrainJobs and training Jobs, counting every request."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []
        self.jobs: list[dict[str, Any]] = []
        self.events: list[str] = []

    def read_modelline(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.requests.append(f"get {name}")
        return super().read_modelline(namespace, name)

    def patch_modelline_status(self, *args: Any, **kwargs: Any) -> None:
        self.requests.append("patch")
        super().patch_modelline_status(*args, **kwargs)

    def list_retrainjobs(self, namespace: str) -> list[dict[str, Any]]:
        self.requests.append("list retrainjobs")
        return super().list_retrainjobs(namespace)

    def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        self.requests.append("list jobs")
        return self.jobs

    def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.requests.append(f"get job {name}")
        return None

    def read_retrainjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.requests.append(f"get retrainjob {name}")
        return {"metadata": {"name": name, "uid": "u9"}, "status": {"phase": "Running"}}

    def emit_event(self, body: Any, reason: str, *args: Any, **kwargs: Any) -> None:
        self.events.append(reason)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Any:
    cluster = Cluster()
    deps = types.SimpleNamespace(
        config=OperatorConfig(claim_name="models", champion_sync_interval=600),
        cluster=cluster,
        mlflow=None,
        store=None,  # no `locks`: no alarm at a slot (a pass here is called directly)
    )
    monkeypatch.setattr(lines.clock, "now", lambda: NOW)
    yield deps
    lines._runs.clear()
    job_outcome._listings.clear()
    champion_sync.forget("team", "plain")
    champion_sync.forget("team", "nightly")


def add_line(cluster: Cluster, name: str, spec: dict[str, Any], **status: Any) -> None:
    cluster.lines[("team", name)] = {
        "metadata": {
            "name": name,
            "namespace": "team",
            "uid": f"uid-{name}",
            "generation": 1,
            "resourceVersion": "1",
            "creationTimestamp": "2026-12-01T00:00:00Z",
        },
        "spec": {"template": {"dataset": {"uri": "s3://d/x"}}, **spec},
        "status": {
            "ledger": {"next": "3", "1": "uid-1 verified", "2": "uid-2 verified"},
            **status,
        },
    }


def test_a_plain_line_settles_into_passes_that_do_nothing_and_say_until_when(world: Any) -> None:
    cluster: Cluster = world.cluster
    add_line(cluster, "plain", {})
    first = lines.reconcile_line(world, "team", "plain")
    assert first is not None and first.quiet is None  # it wrote Ready: something changed
    assert "patch" in cluster.requests

    cluster.requests.clear()
    second = lines.reconcile_line(world, "team", "plain")
    assert second is not None and second.quiet is not None
    assert "patch" not in cluster.requests
    assert (
        second.quiet.resource_version
        == cluster.lines[("team", "plain")]["metadata"]["resourceVersion"]
    )
    # Nothing of a plain line falls due before the recheck (the champion check is further).
    assert second.quiet.until == NOW + line_idle.RECHECK
    assert second.quiet.passed_at == NOW

    # Its next tick, with the watch showing that resourceVersion: no request at all.
    idle = line_idle.IdleLines()
    idle.record("team", "plain", second.quiet)
    idle.seen("team", "plain", second.quiet.resource_version)
    cluster.requests.clear()
    assert idle.quiet("team", "plain", NOW + datetime.timedelta(seconds=10))
    assert cluster.requests == []


def test_a_line_with_a_run_or_a_held_job_still_going_is_never_quiet(world: Any) -> None:
    cluster: Cluster = world.cluster
    add_line(cluster, "plain", {})
    lines.reconcile_line(world, "team", "plain")
    running = {
        "metadata": {"name": "plain-r1", "uid": "u1", "ownerReferences": []},
        "spec": {"model": "plain"},
        "status": {"phase": "Running"},
    }
    cluster.retrainjobs = [running]
    lines._runs.clear()
    outcome = lines.reconcile_line(world, "team", "plain")
    assert outcome is not None and outcome.quiet is None

    # Its run ended, but the run's training Job still holds the finalizer (its RetrainJob,
    # read by the sweep, has not recorded the outcome yet): the sweep must look again.
    running["status"] = {
        "phase": "Succeeded",
        "conditions": [
            {"type": "Complete", "status": "True"},
            {"type": "Verified", "status": "True"},
        ],
    }
    lines._runs.clear()
    cluster.jobs = [
        {
            "metadata": {
                "name": "retrain-plain-v3",
                "namespace": "team",
                "labels": {api.LABEL_MODEL: "plain"},
                "finalizers": [api.JOB_FINALIZER],
                "ownerReferences": [
                    {"kind": api.KIND, "name": "other", "uid": "u9", "apiVersion": api.API_VERSION}
                ],
            },
            "status": {},
        }
    ]
    job_outcome._listings.clear()
    outcome = lines.reconcile_line(world, "team", "plain")
    assert outcome is not None and outcome.quiet is None
    assert job_outcome.held(cluster, "team", "plain") == ["retrain-plain-v3"]

    cluster.jobs = []
    job_outcome._listings.clear()
    outcome = lines.reconcile_line(world, "team", "plain")
    assert outcome is not None and outcome.quiet is not None


def test_a_scheduled_line_is_quiet_until_its_next_slot(world: Any) -> None:
    cluster: Cluster = world.cluster
    add_line(
        cluster,
        "nightly",
        {"schedule": {"cron": "0 13 * * *"}},
        lastScheduleTime="2026-12-05T13:00:00Z",  # today's slot is still to come
    )
    lines.reconcile_line(world, "team", "nightly")
    outcome = lines.reconcile_line(world, "team", "nightly")
    assert outcome is not None and outcome.quiet is not None
    assert cluster.lines[("team", "nightly")]["status"]["nextRunTime"] == "2026-12-06T13:00:00Z"
    assert outcome.quiet.until == NOW + line_idle.RECHECK  # 12:05, before the slot

    cluster.lines[("team", "nightly")]["spec"]["schedule"]["cron"] = "2 12 * * *"
    lines.reconcile_line(world, "team", "nightly")  # writes the new nextRunTime
    outcome = lines.reconcile_line(world, "team", "nightly")
    assert outcome is not None and outcome.quiet is not None
    assert outcome.quiet.until == datetime.datetime(2026, 12, 6, 12, 2, tzinfo=datetime.UTC)


def test_a_line_with_scrub_or_retention_ticks_as_before(world: Any) -> None:
    cluster: Cluster = world.cluster
    add_line(cluster, "plain", {"retention": {"keepLast": 5, "dryRun": True}})
    lines.reconcile_line(world, "team", "plain")
    outcome = lines.reconcile_line(world, "team", "plain")
    assert outcome is not None and outcome.quiet is None
    assert "get job retrainer-retain-plain" in cluster.requests  # its Job is looked at every tick
