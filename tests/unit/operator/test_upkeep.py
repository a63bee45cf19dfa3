"""The ModelLine upkeep as plain functions: the retention rule, scrub timing, the steps' status
patches, and the Jobs they start (against a fake cluster that records what it is asked)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from retrainer_contract import upkeep as reports
from retrainer_operator import retention, scrub, upkeep
from retrainer_operator.config import OperatorConfig

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
CONFIG = OperatorConfig(claim_name="models", operator_image="ghcr.io/retrainer/operator:1.2.3")


class FakeCluster:
    """Jobs by name; a finished Job's pod says `message` with `exit_code`."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.message = ""
        self.exit_code = 0

    def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.jobs.get(name)

    def create_job(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        self.jobs[manifest["metadata"]["name"]] = manifest
        return manifest, True

    def delete_job(self, namespace: str, name: str) -> None:
        self.jobs.pop(name, None)
        self.deleted.append(name)

    def finish(self, name: str, message: str, exit_code: int = 0) -> None:
        self.jobs[name]["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
        self.message, self.exit_code = message, exit_code

    def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        return []  # no training Jobs to release (job_outcome.sweep)

    def list_job_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        state = {"terminated": {"exitCode": self.exit_code, "message": self.message}}
        return [{"status": {"containerStatuses": [{"state": state}]}}]


def line(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    meta = {"name": "shapes", "namespace": "team-a", "uid": "u-1"}
    return {"metadata": meta, "spec": spec, "status": status or {}}


# ---- retention ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verified", "keep", "champion", "previous", "kept", "removable"),
    [
        ([1, 2, 3, 4, 5, 6], 2, 3, 2, [2, 3, 5, 6], [1, 4]),
        ([1, 2, 3], 5, None, None, [1, 2, 3], []),
        ([1, 2, 3, 4], 1, None, None, [4], [1, 2, 3]),
        ([3, 1, 2, 2], 1, 9, None, [3], [1, 2]),  # a champion not verified is never a candidate
        ([1, 2, 4], 1, 4, 3, [4], [1, 2]),  # 3 (unverified, in flight) is never listed
    ],
)
def test_retention_keeps_the_newest_the_champion_and_its_predecessor(
    verified: list[int],
    keep: int,
    champion: int | None,
    previous: int | None,
    kept: list[int],
    removable: list[int],
) -> None:
    assert retention.retention_plan(verified, keep, champion, previous) == (kept, removable)


def test_a_dry_run_lists_the_claim_copies_and_starts_nothing() -> None:
    cluster = FakeCluster()
    body = line({"retention": {"keepLast": 1}}, {"champion": {"version": 2}})
    step = retention.retention_step(cluster, body, CONFIG, [1, 2, 3], T0)  # type: ignore[arg-type]
    assert step.patch == {
        "retention": {
            "kept": "2-3",
            "removable": [
                "pvc://models/shapes/models/retrained_v1.pt",
                "pvc://models/shapes/runs/train/retrained_v1.pt",
                "pvc://models/shapes/runs/train/retrain_v1",
            ],
            "time": "2026-01-01T00:00:00Z",
        }
    }
    assert cluster.jobs == {}
    again = line(body["spec"], {**body["status"], **step.patch})
    assert not retention.retention_step(cluster, again, CONFIG, [1, 2, 3], T0)  # type: ignore[arg-type]


def test_a_real_run_starts_one_job_then_records_what_it_removed() -> None:
    cluster = FakeCluster()
    body = line({"retention": {"keepLast": 1, "dryRun": False}}, {"retention": {"removed": "1"}})
    started = retention.retention_step(cluster, body, CONFIG, [1, 2, 3, 4], T0)  # type: ignore[arg-type]
    job = cluster.jobs[retention.job_name("shapes")]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [
        "retain", "shapes", "2-3", "--root", "/data", "--namespace", "team-a"
    ]  # fmt: skip
    assert container["volumeMounts"][0]["readOnly"] is False
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "retrainer-upkeep"  # re-reads the champion
    assert pod["automountServiceAccountToken"] is True
    assert job["metadata"]["ownerReferences"][0]["kind"] == "ModelLine"
    assert [e.reason for e in started.events] == [upkeep.Reason.RETENTION_STARTED]

    status = upkeep.apply_step(body["status"], started)
    cluster.finish(
        retention.job_name("shapes"), reports.retain_report("shapes", [2, 3], ["x"] * 6, [])
    )
    done = retention.retention_step(cluster, line(body["spec"], status), CONFIG, [1, 2, 3, 4], T0)  # type: ignore[arg-type]
    assert done.patch["retention"]["removed"] == "1-3"
    assert done.patch["retention"]["removable"] == []
    assert [e.reason for e in done.events] == [upkeep.Reason.CLAIM_COPIES_REMOVED]
    assert cluster.deleted == [retention.job_name("shapes")]


# ---- scrub ----------------------------------------------------------------------------------


def test_a_scrub_is_due_first_and_then_once_per_interval() -> None:
    spec = {"intervalSeconds": 3600}
    assert scrub.due(spec, {}, T0)
    last = {"time": "2026-01-01T00:00:00Z"}
    assert not scrub.due(spec, last, T0 + datetime.timedelta(seconds=3599))
    assert scrub.due(spec, last, T0 + datetime.timedelta(seconds=3600))


def test_a_scrub_starts_a_read_only_job_then_records_its_report() -> None:
    cluster = FakeCluster()
    body = line({"scrub": {"intervalSeconds": 60}})
    started = scrub.scrub_step(cluster, body, CONFIG, T0)  # type: ignore[arg-type]
    assert started.patch == {"scrub": {"jobName": "retrainer-scrub-shapes"}}
    job = cluster.jobs["retrainer-scrub-shapes"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/retrainer/operator:1.2.3"
    assert container["args"] == ["verify", "shapes", "--all", "--root", "/data"]
    assert container["volumeMounts"][0]["readOnly"] is True
    assert {e["name"] for e in container["env"]} >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}

    running = line(body["spec"], upkeep.apply_step({}, started))
    assert not scrub.scrub_step(cluster, running, CONFIG, T0)  # type: ignore[arg-type]
    problem = reports.problem(
        1, "production", "shapes/models/retrained_v1.pt", "missing", "missing"
    )
    cluster.finish("retrainer-scrub-shapes", reports.scrub_report("shapes", [1, 2], [problem]), 1)
    done = scrub.scrub_step(cluster, running, CONFIG, T0)  # type: ignore[arg-type]
    status = upkeep.apply_step(running["status"], done, generation=1, now="2026-01-01T00:00:00Z")
    assert status["scrub"] == {
        "time": "2026-01-01T00:00:00Z",
        "checked": 2,
        "problems": ["v1 production shapes/models/retrained_v1.pt: missing"],
    }
    (condition,) = status["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "Scrubbed", "False", upkeep.Reason.COPY_MISSING
    )  # fmt: skip
    assert "v1 production shapes/models/retrained_v1.pt: missing" in condition["message"]
    assert [(e.reason, e.warning) for e in done.events] == [(upkeep.Reason.COPY_MISSING, True)]

    # The next tick sees the result recorded: it removes the Job, starts nothing.
    assert not scrub.scrub_step(cluster, line(body["spec"], status), CONFIG, T0)  # type: ignore[arg-type]
    assert cluster.jobs == {}


def test_a_scrub_without_a_report_is_unknown_not_intact() -> None:
    step = scrub.result_step({}, 137, "OOMKilled", T0)
    assert step.condition is not None
    assert step.condition[1:3] == (None, upkeep.Reason.SCRUB_FAILED)


def test_a_changed_copy_outranks_a_missing_one() -> None:
    problems = [
        reports.problem(1, "quickAccess", "a", "missing", reports.MISSING),
        reports.problem(2, "mlflow", "s3://b", "sha256 differs", reports.CHANGED),
    ]
    step = scrub.result_step({}, 1, reports.scrub_report("shapes", [1, 2], problems), T0)
    assert step.condition is not None and step.condition[2] == upkeep.Reason.COPY_CHANGED


def test_apply_step_merges_like_a_merge_patch() -> None:
    status = {"scrub": {"jobName": "j", "time": "t0"}, "latestVerified": 3}
    new = upkeep.apply_step(status, upkeep.UpkeepStep({"scrub": {"jobName": None, "checked": 2}}))
    assert new == {"scrub": {"time": "t0", "checked": 2}, "latestVerified": 3}


def test_copies_that_could_not_be_read_are_unknown_not_changed() -> None:
    problems = [reports.problem(1, "mlflow", "s3://b/k", "unreadable: timeout", reports.UNREADABLE)]
    step = scrub.result_step({}, 1, reports.scrub_report("shapes", [1], problems), T0)
    assert step.condition is not None
    assert step.condition[1:3] == (None, upkeep.Reason.COPY_UNREADABLE)


def test_a_failed_removal_is_retried_only_after_the_retry_interval() -> None:
    cluster = FakeCluster()
    spec = {"retention": {"keepLast": 1, "dryRun": False}}
    failed = {"retention": {"time": "2026-01-01T00:00:00Z", "removable": ["pvc://models/x"]}}
    soon = T0 + retention.RETRY - datetime.timedelta(seconds=1)
    assert not retention.retention_step(cluster, line(spec, failed), CONFIG, [1, 2], soon)  # type: ignore[arg-type]
    assert cluster.jobs == {}
    later = retention.retention_step(
        cluster, line(spec, failed), CONFIG, [1, 2], T0 + retention.RETRY
    )  # type: ignore[arg-type]
    assert [e.reason for e in later.events] == [upkeep.Reason.RETENTION_STARTED]
    assert list(cluster.jobs) == [retention.job_name("shapes")]
