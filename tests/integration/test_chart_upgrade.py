"""`helm upgrade` rolls the chart's two operator replicas without a gap in reconciliation.

The chart is installed with `replicaCount=2` (leader election on, RollingUpdate with maxSurge
1 and maxUnavailable 0) and its operator pods run as the world's pods: the Deployment
controller rolls them and the pod runner stops the old ones with SIGTERM, as a kubelet does.
A stream of RetrainJobs (one every `INTERVAL` seconds, trained by the benchmarks' stand-in
trainer: a trainer-shaped manifest in about a second, so each one reaches Succeeded) runs
before, during and after a `helm upgrade` that changes a pod annotation, so the Deployment
rolls both pods. Evidence, not timings:

- the rollout completes: a new ReplicaSet holds both replicas and no old pod is left;
- the Lease (every write watched): at no observed moment was more than one Lease of the
  namespace held; its holder moved from an old pod to a new one, each move through a release
  (holder cleared by the stopping leader, never a takeover by expiry), and `leaseTransitions`
  counted exactly the acquisitions seen; the pods that logged `leader_acquired` are exactly
  the holders seen;
- each pod's own log: nothing reconciled before it acquired the Lease or after it released
  it, and each RetrainJob was accepted (`phase=none->...`) by exactly one pod;
- no gap: every RetrainJob created before, during and after the roll was accepted within a
  bounded wait once the roll was over, got its Job and reached Succeeded, with versions 1..N
  each once and the ledger agreeing; RetrainJobs were created while the roll ran and were
  accepted both by an old pod and by a new one.

Printed (pytest -s), never asserted: the largest apply -> Job latency during the roll next to
the one before it, how long the Lease stood free at each handover, and the rollout time.

The world runs every pod on the host network, so the replicas would collide on the chart's
metrics and health ports: a helm post-renderer turns both off (chart_support.world_post_renderer).
The operator serves its named namespaces without Kopf's cluster-wide scan (which the chart
does not grant, and which would stall every new leader about a minute: handlers.settings_for).

Fault points (each proves one assertion can fail): old pods killed without releasing the
Lease under a long lease duration leave RetrainJobs created during the roll unaccepted; new
pods that run without leader election (what the chart refuses, forced by a post-renderer)
reconcile without the Lease.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import itertools
import re
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from chart_support import (
    CHART,
    HelmRunner,
    RetrainJobStream,
    WorldWatch,
    lease_changes,
    lease_free_spans,
    operator_deployment_name,
    operator_pods,
    release_operator_finalizers,
    rolled_out,
    rollout_state,
    world_post_renderer,
)
from container_support import pod_log
from kubernetes import client
from operator_support import condition, get, retrainjob, versions_ledger, wait_for
from retrainer_world.world import World

pytestmark = pytest.mark.integration

INTERVAL = 1.0  # seconds between two RetrainJobs of the stream (each one a trainer pod)
BEFORE, AFTER = 4, 4  # RetrainJobs created before the upgrade starts and after the roll ends
ACCEPT_TIMEOUT = 60.0  # how long after the roll every RetrainJob must be Accepted
STANDIN = ("retrainer-bench-trainer", "standin")  # tools/retrainer_world/kubelet/images.yaml
SMALL = {"cpu": "10m", "memory": "64Mi"}
Lease = tuple[float, str, str, int]


def release_for(namespace: str) -> str:
    return "up-" + namespace[-12:].strip("-")


def chart_values(world: World, namespace: str) -> list[str]:
    """The install's values (process-mode pods: the operator from the repository's venv)."""
    return [
        "--namespace", namespace,
        "--set", f"watchNamespaces[0]={namespace}",
        "--set", "replicaCount=2",
        "--set", "storage.create=true",
        "--set", "storage.size=1Gi",
        "--set", f"mlflow.trackingUri={world.mlflow_uri}",
        "--set", f"s3.endpoint={world.minio_endpoint}",
        "--set", "progressInterval=2",
        "--set", "logFormat=plain",
        "--set", f"trainer.image.repository={STANDIN[0]}",
        "--set", f"trainer.image.tag={STANDIN[1]}",
    ]  # fmt: skip


def pod_of(identity: str) -> str:
    """The pod an identity belongs to (`<POD_NAME>_<per-process suffix>`)."""
    return identity.rpartition("_")[0]


def holder_now(watched: WorldWatch, lease: str) -> str:
    changes = lease_changes(list(watched.leases), lease)
    return changes[-1][1] if changes else ""


def leader_and_standby(
    world: World, kube: client.ApiClient, namespace: str, release: str, watched: WorldWatch
) -> bool:
    pods = [p.metadata.name for p in operator_pods(kube, namespace, release)]
    leader = pod_of(holder_now(watched, operator_deployment_name(release)))
    standbys = [p for p in pods if p != leader]
    return (
        len(pods) == 2
        and leader in pods
        and all(
            "event=leader_waiting" in pod_log(world, namespace, p, "operator") for p in standbys
        )
    )


def operator_logs(world: World, namespace: str, release: str) -> dict[str, str]:
    """Every operator pod's log there ever was (the runner keeps deleted pods' logs)."""
    folder = Path(world.state) / "logs" / "pods"
    prefix = f"{namespace}_{operator_deployment_name(release)}-"
    return {
        path.name.removeprefix(f"{namespace}_").removesuffix("_operator.log"): path.read_text(
            errors="replace"
        )
        for path in sorted(folder.glob(f"{prefix}*_operator.log"))
    }


def accepted(obj: Mapping[str, Any]) -> bool:
    return condition(dict(obj), "Accepted").get("status") == "True"


def finished(obj: Mapping[str, Any]) -> bool:
    return (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def wait_all(
    kube: client.ApiClient,
    namespace: str,
    names: Sequence[str],
    what: str,
    done: Callable[[Mapping[str, Any]], bool],
    timeout: float,
) -> list[dict[str, Any]]:
    """Wait until `done` holds for every RetrainJob; the failure names the ones left."""
    deadline = time.monotonic() + timeout
    left = list(names)
    while True:
        left = [name for name in left if not done(get(kube, namespace, name))]
        if not left:
            return [get(kube, namespace, name) for name in names]
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(left)} of {len(names)} RetrainJobs not {what} within {timeout:.0f}s: {left}"
            )
        time.sleep(0.5)


# ---- one roll under a stream of RetrainJobs -------------------------------------------------


@dataclasses.dataclass
class Roll:
    """What one `helm upgrade` under load left to check."""

    lease: str
    old_pods: set[str]
    new_pods: set[str]
    before: dict[str, Any]  # rollout_state before and after
    after: dict[str, Any]
    applied: dict[str, float]  # RetrainJob -> monotonic time of its create call
    upgrading: float  # when `helm upgrade` started
    rolled: float  # when the roll was seen complete
    leases: list[Lease]
    jobs: dict[str, float]  # RetrainJob -> when its Job was first seen
    logs: dict[str, str]  # operator pod -> its log
    objs: list[dict[str, Any]]  # the RetrainJobs, finished (empty when not waited for)
    errors: list[str]

    @property
    def names(self) -> list[str]:
        return sorted(self.applied)

    @property
    def during(self) -> list[str]:
        return [n for n in self.names if self.upgrading <= self.applied[n] <= self.rolled]


@contextlib.contextmanager
def installed(
    helm: HelmRunner, kube: client.ApiClient, namespace: str, release: str, *args: str
) -> Iterator[None]:
    helm("install", release, str(CHART), *args)
    try:
        yield
    finally:
        helm("uninstall", release, "--namespace", namespace, "--wait", check=False)
        release_operator_finalizers(kube, namespace)


def roll_under_load(
    helm: HelmRunner,
    world: World,
    kube: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    *,
    values: Sequence[str] = (),
    install_pod: Mapping[str, Any] | None = None,
    upgrade_env: Mapping[str, str] | None = None,
    accept_timeout: float | None = ACCEPT_TIMEOUT,
    finish: bool = True,
) -> Roll:
    """Install, stream RetrainJobs, `helm upgrade` (a new pod annotation), wait for the roll
    and for every RetrainJob to be Accepted (then, with `finish`, Succeeded or Failed; with
    `accept_timeout` None, for neither).
    `install_pod` (pod spec keys of the first pods) and `upgrade_env` (operator env of the new
    ones) are fault points."""
    release = release_for(namespace)
    args = [*chart_values(world, namespace), *values]
    first = world_post_renderer(tmp_path / "render-install", pod_spec=install_pod)
    second = world_post_renderer(tmp_path / "render-upgrade", env=upgrade_env)
    with (
        installed(helm, kube, namespace, release, *args, "--post-renderer", str(first)),
        WorldWatch(world.kubeconfig, namespace) as watched,
    ):
        wait_for(
            "one replica leading, the other standing by",
            lambda: leader_and_standby(world, kube, namespace, release, watched),
            120,
        )
        before = rollout_state(kube, namespace, release)

        def body(name: str) -> dict[str, Any]:
            return retrainjob(name, "s3://datasets/none", resources=SMALL)

        with RetrainJobStream(world.kubeconfig, namespace, body, INTERVAL) as stream:
            wait_for(f"{BEFORE} RetrainJobs", lambda: len(stream.applied) >= BEFORE, 60)
            upgrading = time.monotonic()
            helm(
                "upgrade", release, str(CHART), *args, "--post-renderer", str(second),
                "--set-string", "podAnnotations.rolled=yes",
            )  # fmt: skip
            wait_for(
                "the rollout",
                lambda: rolled_out(rollout_state(kube, namespace, release)),
                180,
                interval=0.2,
            )
            rolled = time.monotonic()
            count = len(stream.applied)
            wait_for(f"{AFTER} more", lambda: len(stream.applied) >= count + AFTER, 60)
        after = rollout_state(kube, namespace, release)
        names = sorted(stream.applied)
        # No gap: nothing created before or during the roll is left unaccepted after it.
        objs: list[dict[str, Any]] = []
        if accept_timeout is not None:
            wait_all(kube, namespace, names, "accepted after the roll", accepted, accept_timeout)
            wait_for("every Job watched", lambda: set(names) <= set(watched.jobs), 30)
            if finish:
                objs = wait_all(kube, namespace, names, "finished", finished, 180)
        return Roll(
            lease=operator_deployment_name(release),
            old_pods=set(before["pods"]),
            new_pods=set(after["pods"]),
            before=before,
            after=after,
            applied=dict(stream.applied),
            upgrading=upgrading,
            rolled=rolled,
            leases=list(watched.leases),
            jobs=dict(watched.jobs),
            logs=operator_logs(world, namespace, release),
            objs=objs,
            errors=stream.errors + watched.errors,
        )


# ---- what the evidence must show ------------------------------------------------------------


def assert_one_lease_held(leases: Sequence[Lease]) -> None:
    """At every watched Lease write, at most one Lease of the namespace names a holder."""
    now: dict[str, str] = {}
    for _, name, holder, _ in leases:
        now[name] = holder
        held = {lease: who for lease, who in now.items() if who}
        assert len(held) <= 1, f"two leaders at once: {held}"


def assert_handed_over_by_release(leases: Sequence[Lease], lease: str) -> list[str]:
    """Every change of holder went through a release, and leaseTransitions counted exactly
    the acquisitions watched; returns the holders in order."""
    changes = lease_changes(leases, lease)
    assert changes and changes[0][1], f"the Lease was not held when the watch began: {changes}"
    for (_, before), (_, after) in itertools.pairwise(changes):
        assert not (before and after), (
            f"{after} took the Lease from {before} without a release (expiry or a steal)"
        )
    holders = [holder for _, holder in changes if holder]
    counts = [count for _, name, _, count in leases if name == lease]
    assert counts[-1] - counts[0] == len(holders) - 1, (
        f"leaseTransitions went {counts[0]} -> {counts[-1]}, {len(holders) - 1} takeovers watched"
    )
    return holders


ACTIVITY = re.compile(r"logger=kopf|transition retrainjob=")
ACCEPTED = re.compile(r"transition retrainjob=[^/\s]+/(\S+) phase=none->")


def leadership(log: str) -> list[dict[str, Any]]:
    """Each start of the operator process in `log`: its identity, whether it acquired and
    released the Lease, what it did out of turn, and which RetrainJobs it accepted."""
    runs: list[dict[str, Any]] = []
    for line in log.splitlines():
        if not line.startswith("time="):
            continue
        if " starting namespaces=" in line or not runs:
            runs.append({"identity": "", "acquired": False, "released": False})
            runs[-1].update(out_of_turn=[], accepted=[])
        run = runs[-1]
        if match := re.search(r"event=leader_acquired identity=(\S+)", line):
            run["acquired"], run["identity"] = True, match.group(1)
        elif "event=leader_released" in line:
            run["released"] = True
        elif ACTIVITY.search(line):
            if not run["acquired"] or run["released"]:
                run["out_of_turn"].append(line)
            if match := ACCEPTED.search(line):
                run["accepted"].append(match.group(1))
    return runs


def assert_one_active_at_a_time(roll: Roll) -> dict[str, list[str]]:
    """The Lease and the pods' own logs agree that one pod reconciled at a time, the Lease
    moved from an old pod to a new one; returns RetrainJob -> the pods that accepted it."""
    assert_one_lease_held(roll.leases)
    runs = {pod: leadership(log) for pod, log in roll.logs.items()}
    assert set(runs) == roll.old_pods | roll.new_pods, sorted(runs)
    for pod, pod_runs in runs.items():
        for run in pod_runs:
            assert not run["out_of_turn"], (
                f"{pod} reconciled without the Lease: {run['out_of_turn'][:3]}"
            )
            if pod in roll.old_pods and run["acquired"]:
                assert run["released"], f"{pod} led and was stopped without releasing"
    holders = assert_handed_over_by_release(roll.leases, roll.lease)
    assert pod_of(holders[0]) in roll.old_pods, (holders, roll.old_pods)
    assert pod_of(holders[-1]) in roll.new_pods, f"the Lease never reached a new pod: {holders}"
    said_led = {r["identity"] for rs in runs.values() for r in rs if r["acquired"]}
    assert said_led == set(holders), (said_led, holders)
    by_whom: dict[str, list[str]] = {}
    for pod, pod_runs in runs.items():
        for run in pod_runs:
            for name in run["accepted"]:
                by_whom.setdefault(name, []).append(pod)
    assert sorted(by_whom) == roll.names, sorted(set(roll.names) ^ set(by_whom))
    twice = {name: pods for name, pods in by_whom.items() if len(pods) != 1}
    assert not twice, f"accepted by more than one pod: {twice}"
    return by_whom


def assert_versions_and_jobs(kube: client.ApiClient, namespace: str, roll: Roll) -> None:
    """Every RetrainJob Succeeded, versions 1..N each once, one Job each, the ledger agreeing."""
    objs = roll.objs
    phases = {o["metadata"]["name"]: o["status"]["phase"] for o in objs}
    assert set(phases.values()) == {"Succeeded"}, phases
    versions = sorted(o["status"]["version"] for o in objs)
    assert versions == list(range(1, len(objs) + 1)), f"versions lost or reused: {versions}"
    jobs = client.BatchV1Api(kube).list_namespaced_job(namespace).items
    by_job = {j.metadata.name: j.metadata.annotations["retrainer.dev/uid"] for j in jobs}
    assert sorted(by_job) == sorted(f"retrain-shapes-v{v}" for v in versions)
    ledger = versions_ledger(kube, namespace, "shapes")
    assert ledger["next"] == str(len(objs) + 1), ledger.get("next")
    for o in objs:
        uid, version = o["metadata"]["uid"], o["status"]["version"]
        assert by_job[f"retrain-shapes-v{version}"] == uid, f"v{version} has another owner"
        assert ledger[f"uid.{uid}"] == str(version), f"ledger disagrees for v{version}"


STAMP = re.compile(r"^time=(\S+ \S+)")


def shutdowns(logs: Mapping[str, str]) -> list[float]:
    """For each leader stopped by SIGTERM: seconds from the signal to its release of the
    Lease, on its own log's clock (Kopf finishes its handlers in flight first)."""
    spans = []
    for log in logs.values():
        signalled = None
        for line in log.splitlines():
            stamp = STAMP.match(line)
            if not stamp:
                continue
            at = datetime.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if "Signal SIGTERM is received" in line:
                signalled = at
            elif "event=leader_released" in line and signalled is not None:
                spans.append(at - signalled)
    return spans


def print_logs(world: World, namespace: str) -> None:
    for pod, log in operator_logs(world, namespace, release_for(namespace)).items():
        print(f"--- {pod}\n{log[-6000:]}")


# ---- the tests ------------------------------------------------------------------------------


def test_helm_upgrade_rolls_two_replicas_without_a_gap_in_reconciliation(
    helm: HelmRunner,
    world: World,
    kube: client.ApiClient,
    namespace: str,
    crd: str,
    tmp_path: Path,
) -> None:
    try:
        roll = roll_under_load(helm, world, kube, namespace, tmp_path)
        # The rollout completed: a new ReplicaSet, both replicas in it, no old pod left.
        assert roll.after["newest"] != roll.before["newest"], (roll.before, roll.after)
        assert rolled_out(roll.after)
        assert len(roll.old_pods) == len(roll.new_pods) == 2, (roll.old_pods, roll.new_pods)
        assert not roll.old_pods & roll.new_pods
        by_whom = assert_one_active_at_a_time(roll)
        # No gap: the stream ran through the roll, old and new pods both took RetrainJobs,
        # and every one has its own version and Job.
        assert roll.during, "no RetrainJob was created during the roll"
        old_took = [n for n, (pod,) in by_whom.items() if pod in roll.old_pods]
        new_took = [n for n, (pod,) in by_whom.items() if pod in roll.new_pods]
        assert old_took and new_took, (old_took, new_took)
        assert_versions_and_jobs(kube, namespace, roll)
    except BaseException:
        print_logs(world, namespace)
        raise

    latency = {n: roll.jobs[n] - roll.applied[n] for n in roll.names}
    calm = [latency[n] for n in roll.names if roll.applied[n] < roll.upgrading]
    worst = max(roll.during, key=lambda n: latency[n])
    changes = lease_changes(roll.leases, roll.lease)
    holders = [pod_of(h) for _, h in changes if h]
    free = lease_free_spans(changes)
    print(
        f"\nhelm upgrade, 2 replicas: rollout {roll.rolled - roll.upgrading:.1f}s; "
        f"{len(holders) - 1} leader transition(s) {' -> '.join(holders)}; old leader SIGTERM "
        f"-> release {', '.join(f'{s:.2f}s' for s in shutdowns(roll.logs))}, then Lease free "
        f"{', '.join(f'{s:.2f}s' for s in free)}; {len(roll.names)} RetrainJobs "
        f"({len(roll.during)} during the roll), accepted by old pods {len(old_took)}, "
        f"new pods {len(new_took)}; apply -> Job before the upgrade p50 "
        f"{statistics.median(calm):.2f}s max {max(calm):.2f}s, during the roll max "
        f"{latency[worst]:.2f}s ({worst}); errors: {roll.errors or 'none'}"
    )


def test_fault_point_an_old_leader_killed_without_release_leaves_retrainjobs_unaccepted(
    helm: HelmRunner,
    world: World,
    kube: client.ApiClient,
    namespace: str,
    crd: str,
    tmp_path: Path,
) -> None:
    """The gap the main test would catch: the old pods die at once (grace period 0: SIGTERM
    then SIGKILL, no release) and the Lease lasts 300 s, so no new pod may lead when the roll
    ends and RetrainJobs created during it are not accepted within the bounded wait."""
    long_lease = ["--set", "leaderElection.leaseDurationSeconds=300"]
    with pytest.raises(AssertionError, match=r"not accepted after the roll"):
        roll_under_load(
            helm,
            world,
            kube,
            namespace,
            tmp_path,
            values=long_lease,
            install_pod={"terminationGracePeriodSeconds": 0},
            accept_timeout=15,
        )


def test_fault_point_replicas_without_leader_election_reconcile_without_the_lease(
    helm: HelmRunner,
    world: World,
    kube: client.ApiClient,
    namespace: str,
    crd: str,
    tmp_path: Path,
) -> None:
    """Two replicas that all reconcile (leader election off in the new pods: the chart refuses
    replicaCount 2 without it, so a post-renderer forces it) are caught by the log check."""
    roll = roll_under_load(
        helm,
        world,
        kube,
        namespace,
        tmp_path,
        upgrade_env={"RETRAINER_LEADER_ELECTION": "false"},
        accept_timeout=None,
    )
    with pytest.raises(AssertionError, match=r"reconciled without the Lease"):
        assert_one_active_at_a_time(roll)
