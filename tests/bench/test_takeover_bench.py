"""Two operator replicas with the chart's default lease timings: how long reconciliation stops
when the leader dies (SIGKILL) or is stopped (SIGTERM, a rolling upgrade's step).

Each trial creates a RetrainJob at the moment the leader goes and measures, on the test's
clock, until the standby holds the Lease and until that RetrainJob is Accepted (its version
allocated and its Job created, kept suspended by a queue name: no training). Baseline: apply
-> Accepted with one leader running, measured in the same run. The killed or stopped replica
is restarted as the next standby, so the trials alternate between the two.

A third figure is the chart's own roll: `helm upgrade` of a two-replica install (its pods run
by the world's pod runner, which stops old pods with SIGTERM as a kubelet does) while a
RetrainJob is created every half second; per roll, how long the Lease stood free and the
largest apply -> Job latency among the RetrainJobs created during it.

Figures are printed (`make bench`, i.e. pytest -s); the assertions are about correctness
(every RetrainJob its own version and one Job), never about speed. Expected from the design:
SIGKILL takes at most the lease duration plus a retry period; SIGTERM the old leader's
shutdown plus at most a retry period; a roll, one or two such SIGTERM handovers.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
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
from chart_support import (
    CHART,
    RetrainJobStream,
    WorldWatch,
    lease_changes,
    lease_free_spans,
    operator_deployment_name,
    release_operator_finalizers,
    rolled_out,
    rollout_state,
    world_post_renderer,
)
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
ROLLS = int(os.environ.get("RETRAINER_BENCH_ROLLS", "2"))  # helm upgrades of the chart
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


def helm_runner(world: World, tmp_path: Path) -> Any:
    """`helm(*args)` against the world, with throwaway helm folders (as the integration tier's
    `helm` fixture)."""
    env = {**os.environ, **world.env()}
    for kind in ("CACHE", "CONFIG", "DATA"):
        env[f"HELM_{kind}_HOME"] = str(tmp_path / f"helm-{kind.lower()}")

    def run(*args: str) -> None:
        cmd = [str(world.bin_dir / "helm"), f"--kubeconfig={world.kubeconfig}", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, f"helm {args[0]}: {proc.stdout}\n{proc.stderr}"

    return run


def test_handover_on_helm_upgrade_with_the_chart(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: Any,  # noqa: F811  (the imported fixture)
    tmp_path: Path,
) -> None:
    """The chart with two replicas and its default lease timings, rolled ROLLS times by
    `helm upgrade` (a new pod annotation each time) under a stream of queued RetrainJobs."""
    helm = helm_runner(world, tmp_path)
    release = "bench-" + namespace[-10:].strip("-")
    lease = operator_deployment_name(release)
    args = [
        "--namespace", namespace,
        "--set", f"watchNamespaces[0]={namespace}",
        "--set", "replicaCount=2",
        "--set", "storage.create=true",
        "--set", "storage.size=1Gi",
        "--set", f"mlflow.trackingUri={world.mlflow_uri}",
        "--set", f"s3.endpoint={world.minio_endpoint}",
        "--set", "logFormat=plain",
        "--post-renderer", str(world_post_renderer(tmp_path / "post-render")),
    ]  # fmt: skip

    def body(name: str) -> dict[str, Any]:
        return retrainjob(name, "s3://datasets/none", **QUEUED)

    trials: list[tuple[float, float, float]] = []  # rollout, Lease free (max), worst apply->Job
    names: list[str] = []
    baseline = 0.0
    helm("install", release, str(CHART), *args)
    try:
        with WorldWatch(world.kubeconfig, namespace) as watched:
            wait_for("a leader", lambda: lease_changes(watched.leases, lease), 120)
            for trial in range(ROLLS + 1):  # the first stream is the baseline only
                with RetrainJobStream(
                    world.kubeconfig, namespace, body, 0.5, prefix=f"roll{trial}-"
                ) as stream:
                    time.sleep(1.5)
                    upgrading = time.monotonic()
                    if trial:
                        helm(
                            "upgrade", release, str(CHART), *args,
                            "--set-string", f"podAnnotations.rolled=r{trial}",
                        )  # fmt: skip
                    wait_for(
                        "the roll",
                        lambda: rolled_out(rollout_state(kube, namespace, release)),
                        180,
                        interval=0.2,
                    )
                    rolled = time.monotonic()
                    time.sleep(1.5)
                applied = dict(stream.applied)
                names += applied
                wait_for(
                    "every Job",
                    lambda applied=applied: set(applied) <= set(watched.jobs),
                    120,
                    interval=0.2,
                )
                during = [n for n, t in applied.items() if upgrading <= t <= rolled] or list(
                    applied
                )
                changes = [c for c in lease_changes(watched.leases, lease) if c[0] >= upgrading]
                free = lease_free_spans(changes) or [0.0]
                worst = max(watched.jobs[n] - applied[n] for n in during)
                if not trial:
                    baseline = statistics.median(watched.jobs[n] - applied[n] for n in applied)
                    continue
                trials.append((rolled - upgrading, max(free), worst))
        for name in names:
            wait_for(f"{name} accepted", lambda n=name: accepted(kube, namespace, n), 120)
    finally:
        helm("uninstall", release, "--namespace", namespace, "--wait")
        release_operator_finalizers(kube, namespace)
    duration, retry = TIMINGS["leaseDurationSeconds"], TIMINGS["retryPeriodSeconds"]
    worst_p50 = statistics.median(t[2] for t in trials)
    print(
        f"\nBENCH helm-upgrade replicas=2 trials={len(trials)} lease_duration_s={duration} "
        f"retry_period_s={retry} rollout_p50_s={statistics.median(t[0] for t in trials):.2f} "
        f"lease_free_max_s={max(t[1] for t in trials):.2f} "
        f"during_roll_apply->job_max_p50_s={worst_p50:.2f} "
        f"during_roll_apply->job_max_s={max(t[2] for t in trials):.2f} "
        f"apply->job_baseline_p50_s={baseline:.3f} gap_over_baseline_s={worst_p50 - baseline:.2f}"
    )
    # Correctness only: every RetrainJob its own version, the ledger losing none.
    versions = sorted(get(kube, namespace, n)["status"]["version"] for n in names)
    assert versions == list(range(1, len(names) + 1))
    assert versions_ledger(kube, namespace, "shapes")["next"] == str(len(names) + 1)
