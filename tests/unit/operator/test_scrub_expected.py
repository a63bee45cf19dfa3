"""The scrub Job is told which versions must be on the claim, and scrub and retention never
run at once (each reads or removes the copies the other touches)."""

from __future__ import annotations

import datetime
from typing import Any

from retrainer_contract import upkeep as reports
from retrainer_operator import retention, scrub, upkeep
from retrainer_operator.config import OperatorConfig
from test_upkeep import FakeCluster, line

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
CONFIG = OperatorConfig(claim_name="models", operator_image="ghcr.io/retrainer/operator:1.2.3")


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_the_scrub_job_expects_the_verified_versions_retention_did_not_remove() -> None:
    cluster = FakeCluster()
    status = {"verifiedVersions": "1-5,7", "retention": {"removed": "1-2"}}
    scrub.scrub_step(cluster, line({"scrub": {"intervalSeconds": 60}}, status), CONFIG, T0)  # type: ignore[arg-type]
    job = cluster.jobs[scrub.job_name("shapes")]
    assert env_of(job)[reports.VERSIONS_ENV] == "3-5,7"
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]  # no API access


def test_a_scrub_waits_for_the_retention_job_and_retention_for_the_scrub_job() -> None:
    cluster = FakeCluster()
    cluster.jobs[retention.job_name("shapes")] = {"metadata": {}, "status": {}}
    scrubbing = line({"scrub": {"intervalSeconds": 60}})
    assert not scrub.scrub_step(cluster, scrubbing, CONFIG, T0)  # type: ignore[arg-type]
    assert scrub.job_name("shapes") not in cluster.jobs

    cluster = FakeCluster()
    cluster.jobs[scrub.job_name("shapes")] = {"metadata": {}, "status": {}}
    removing = line({"retention": {"keepLast": 1, "dryRun": False}})
    step = retention.retention_step(cluster, removing, CONFIG, [1, 2, 3], T0)  # type: ignore[arg-type]
    assert not step.events and retention.job_name("shapes") not in cluster.jobs


def test_a_problem_of_a_version_retention_removed_meanwhile_is_not_damage() -> None:
    problems = [
        reports.problem(1, "production", "shapes/models/retrained_v1.pt", "missing", "missing"),
    ]
    report = reports.scrub_report("shapes", [1, 2], problems)
    step = scrub.result_step({}, 1, report, T0, removed={1})
    assert step.condition is not None
    assert step.condition[1:3] == (True, upkeep.Reason.COPIES_INTACT)
