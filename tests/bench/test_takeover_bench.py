"""Two operator replicas with the chart's default lease timings: how long reconciliation stops
when the leader dies (SIGKILL) or is stopped (SIGTERM, a rolling upgrade's step).

Each trial creates a RetrainJob at the moment the leader goes and measures, on the test's
clock, until the standby holds the Lease and until that RetrainJob is Accepted (its version
allocated and its Job created, kept suspended by a queue name: no training). Baseline: apply
-> Accepted with one leader running, measured in the same run. The killed or stopped replica
is restarted as the next standby, so the trials alternate between the two.

Figures are printed (`make bench`, i.e. pytest -s); the assertions are about correctness
(every RetrainJob its own version and one Job), never about speed. Expected from the design:
SIGKILL takes at most the lease duration plus a retry period; SIGTERM the old leader's
shutdown plus at most a retry period.
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from retrainer_world.world import World

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from crd_fixture import crd  # noqa: F401  (the session fixture, for this module)
from operator_support import (
    Operator,
    condition,
    create,
    get,
    prepare_namespace,
    retrainjob,
    versions_ledger,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
LEASE = "retrainer-operator"
TRIALS = int(os.environ.get("RETRAINER_BENCH_TAKEOVERS", "3"))
QUEUED = {"scheduling": {"queueName": "nowhere"}}  # Jobs stay suspended: no training
# The chart's defaults, so the figures are what an install gets.
TIMINGS = yaml.safe_load((ROOT / "charts" / "retrainer" / "values.yaml").read_text())[
    "leaderElection"
]


def holder(kube: client.ApiClient, namespace: str) -> str:
    spec = client.CoordinationV1Api(kube).read_namespaced_lease(LEASE, namespace).spec
    return str(spec.holder_identity or "")


def accepted(kube: client.ApiClient, namespace: str, name: str) -> bool:
    return condition(get(kube, namespace, name), "Accepted").get("status") == "True"


def current_log(operator: Operator) -> str:
    return operator.log_path.read_text(errors="replace") if operator.log_path.exists() else ""


@pytest.fixture
def replicas(world: World, namespace: str, tmp_path: Path) -> Iterator[list[Operator]]:
    env = {
        "RETRAINER_LEADER_ELECTION": "true",
        "RETRAINER_LEASE_NAME": LEASE,
        "RETRAINER_LEASE_NAMESPACE": namespace,
        "RETRAINER_LEASE_DURATION_SECONDS": str(TIMINGS["leaseDurationSeconds"]),
        "RETRAINER_LEASE_RENEW_DEADLINE_SECONDS": str(TIMINGS["renewDeadlineSeconds"]),
        "RETRAINER_LEASE_RETRY_PERIOD_SECONDS": str(TIMINGS["retryPeriodSeconds"]),
    }
    ops = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        ops.append(Operator(world, namespace, tmp_path / name, **env))
    try:
        yield ops
    finally:
        for op in ops:
            op.stop()


def leader_of(ops: list[Operator], identity: str) -> Operator:
    (found,) = [
        op for op in ops if f"event=leader_acquired identity={identity} " in current_log(op)
    ]
    return found


def standing_by(op: Operator) -> None:
    wait_for("a standby", lambda: "event=leader_waiting" in current_log(op), 120, op)


def handover(
    kube: client.ApiClient, namespace: str, ops: list[Operator], name: str, kill: bool
) -> tuple[float, float]:
    """Take the leader away (SIGKILL or SIGTERM) as RetrainJob `name` is created; returns
    seconds until the standby holds the Lease and until `name` is Accepted."""
    old = holder(kube, namespace)
    leader = leader_of(ops, old)
    standby = next(op for op in ops if op is not leader)
    gone = time.monotonic()
    if kill:
        leader.kill()
    else:
        assert leader.proc is not None
        leader.proc.send_signal(signal.SIGTERM)
    create(kube, namespace, retrainjob(name, "s3://datasets/none", **QUEUED))
    wait_for("a new holder", lambda: holder(kube, namespace) not in ("", old), 120, standby, 0.05)
    took_lease = time.monotonic() - gone
    wait_for(f"{name} accepted", lambda: accepted(kube, namespace, name), 120, standby, 0.05)
    took_work = time.monotonic() - gone
    leader.stop()  # a SIGTERMed leader is waited for; a killed one is already gone
    leader.start()
    standing_by(leader)
    return took_lease, took_work


def test_takeover_after_sigkill_and_handover_on_sigterm_with_the_chart_timings(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: Any,  # noqa: F811  (the imported fixture)
    replicas: list[Operator],
) -> None:
    prepare_namespace(kube, namespace)
    first, second = replicas
    first.start()
    wait_for("a leader", lambda: holder(kube, namespace) != "", 120, first)
    baseline = []
    for i in range(5):
        start = time.monotonic()
        create(kube, namespace, retrainjob(f"base-{i}", "s3://datasets/none", **QUEUED))
        wait_for("accepted", lambda i=i: accepted(kube, namespace, f"base-{i}"), 60, first, 0.02)
        baseline.append(time.monotonic() - start)
    second.start()
    standing_by(second)
    kills = [handover(kube, namespace, replicas, f"kill-{i}", kill=True) for i in range(TRIALS)]
    terms = [handover(kube, namespace, replicas, f"term-{i}", kill=False) for i in range(TRIALS)]
    base = statistics.median(baseline)
    duration, retry = TIMINGS["leaseDurationSeconds"], TIMINGS["retryPeriodSeconds"]

    def line(what: str, trials: list[tuple[float, float]]) -> str:
        lease = statistics.median(t[0] for t in trials)
        work = statistics.median(t[1] for t in trials)
        worst = max(t[1] for t in trials)
        return (
            f"BENCH {what} trials={len(trials)} to_lease_p50_s={lease:.2f} "
            f"to_accepted_p50_s={work:.2f} to_accepted_max_s={worst:.2f} "
            f"ratio_to_lease_duration={work / duration:.2f} gap_over_baseline_s={work - base:.2f}"
        )

    print(
        f"\nBENCH takeover lease_duration_s={duration} "
        f"renew_deadline_s={TIMINGS['renewDeadlineSeconds']} retry_period_s={retry} "
        f"apply->accepted_baseline_p50_s={base:.3f}\n"
        f"{line('sigkill->standby', kills)}\n{line('sigterm->standby', terms)}"
    )
    # Correctness only: every RetrainJob got its own version and the ledger lost none.
    names = [f"base-{i}" for i in range(5)]
    names += [f"{kind}-{i}" for kind in ("kill", "term") for i in range(TRIALS)]
    versions = sorted(get(kube, namespace, n)["status"]["version"] for n in names)
    assert versions == list(range(1, len(names) + 1))
    assert versions_ledger(kube, namespace, "shapes")["next"] == str(len(names) + 1)
    jobs = client.BatchV1Api(kube).list_namespaced_job(namespace).items
    assert len(jobs) == len(names)
