"""Two operator replicas, one active: the holder of the leader Lease reconciles, the standby
does nothing until it takes over, whether the leader is SIGKILLed under load (after the
lease duration), stopped by SIGTERM as in a rolling upgrade (at once: the lease is released)
or finds its lease taken (it exits non-zero, to be restarted as a standby).

Each RetrainJob is queued (`spec.scheduling.queueName`), so its Job stays suspended and no
training runs: what is checked is the version sequence and the Jobs, across a takeover. The
takeover times are measured and printed (pytest -s shows them), never asserted: speed goals
belong to the benchmark, not to tests.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from operator_support import (
    Operator,
    create,
    get,
    prepare_namespace,
    retrainjob,
    versions_ledger,
    wait_accepted,
    wait_for,
)
from retrainer_operator.__main__ import EXIT_LEADERSHIP_LOST
from retrainer_world.world import World

pytestmark = pytest.mark.integration

LEASE = "retrainer-operator"
QUEUED = {"scheduling": {"queueName": "nowhere"}}  # Jobs stay suspended: no training


def replica(world: World, namespace: str, tmp_path: Path, identity: str) -> Operator:
    """One replica with leader election on, short lease timings (takeover within seconds)."""
    log_dir = tmp_path / identity
    log_dir.mkdir()
    return Operator(
        world,
        namespace,
        log_dir,
        RETRAINER_LEADER_ELECTION="true",
        RETRAINER_LEASE_NAME=LEASE,
        RETRAINER_LEASE_NAMESPACE=namespace,
        RETRAINER_LEADER_IDENTITY=identity,
        RETRAINER_LEASE_DURATION_SECONDS="6",
        RETRAINER_LEASE_RENEW_DEADLINE_SECONDS="4",
        RETRAINER_LEASE_RETRY_PERIOD_SECONDS="0.5",
    )


def lease(kube: client.ApiClient, namespace: str) -> dict[str, Any]:
    spec = client.CoordinationV1Api(kube).read_namespaced_lease(LEASE, namespace).spec
    return {"holder": spec.holder_identity or "", "transitions": spec.lease_transitions or 0}


def wait_holder(kube: client.ApiClient, namespace: str, holder: str, timeout: float) -> float:
    """Wait until `holder` holds the Lease; returns the seconds waited (polled every 0.1 s)."""
    started = time.monotonic()
    wait_for(
        f"lease holder {holder!r}",
        lambda: lease(kube, namespace)["holder"] == holder,
        timeout,
        interval=0.1,
    )
    return time.monotonic() - started


def assert_stood_by(operator: Operator) -> None:
    """Before leading, a replica logs only its start and its waiting: no Kopf, no handler."""
    for line in operator.logs().splitlines():
        if "event=leader_acquired" in line:
            return
        if line.startswith("time="):
            assert "event=leader_" in line or " starting " in line, f"a standby acted: {line}"


def waited_s(operator: Operator) -> float:
    match = re.search(r"event=leader_acquired identity=\S+ waited_s=([0-9.]+)", operator.logs())
    assert match, f"no leader_acquired event:\n{operator.logs()[-5000:]}"
    return float(match.group(1))


def assert_one_version_and_one_job_each(
    kube: client.ApiClient, namespace: str, objs: list[dict[str, Any]]
) -> None:
    versions = sorted(o["status"]["version"] for o in objs)
    assert versions == list(range(1, len(objs) + 1)), f"versions lost or reused: {versions}"
    jobs = client.BatchV1Api(kube).list_namespaced_job(namespace).items
    assert sorted(j.metadata.name for j in jobs) == sorted(f"retrain-shapes-v{v}" for v in versions)
    by_job = {j.metadata.name: j.metadata.annotations["retrainer.dev/uid"] for j in jobs}
    for o in objs:
        job = f"retrain-shapes-v{o['status']['version']}"
        assert by_job[job] == o["metadata"]["uid"], f"{job} belongs to another RetrainJob"
    assert versions_ledger(kube, namespace, "shapes")["next"] == str(len(objs) + 1)


def test_a_standby_takes_over_a_killed_leader_without_losing_or_reusing_a_version(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    prepare_namespace(kube, namespace)
    first, second = (replica(world, namespace, tmp_path, name) for name in ("a", "b"))
    try:
        first.start()
        wait_holder(kube, namespace, "a", 120)
        second.start()
        wait_for("b standing by", lambda: "event=leader_waiting" in second.logs(), 60, second)
        # Under load: a burst of RetrainJobs, and the leader killed once a few have versions.
        before = [f"before-{i}" for i in range(12)]
        for name in before:
            create(kube, namespace, retrainjob(name, "s3://datasets/none", **QUEUED))
        wait_for(
            "3 versions allocated",
            lambda: int(versions_ledger(kube, namespace, "shapes").get("next", "1")) >= 4,
            120,
            first,
            interval=0.05,
        )
        allocated = int(versions_ledger(kube, namespace, "shapes")["next"]) - 1
        first.kill()
        killed = time.monotonic()
        wait_holder(kube, namespace, "b", 120)
        takeover = time.monotonic() - killed
        after = [f"after-{i}" for i in range(4)]
        for name in after:
            create(kube, namespace, retrainjob(name, "s3://datasets/none", **QUEUED))
        objs = wait_accepted(kube, namespace, before + after, 180, second)
        assert_stood_by(second)
    except BaseException:
        print(first.logs()[-20000:], second.logs()[-20000:])
        raise
    finally:
        first.kill()
        second.stop()
    print(
        f"\ntakeover after SIGKILL: {takeover:.2f}s from the kill to the standby holding the "
        f"lease (lease duration 6s, retry 0.5s); the standby waited {waited_s(second):.2f}s "
        f"in all; {allocated} of {len(before)} versions were allocated at the kill"
    )
    assert_one_version_and_one_job_each(kube, namespace, objs)
    assert lease(kube, namespace) == {"holder": "", "transitions": 1}, "b did not release"
    assert all(o["status"]["phase"] == "Pending" for o in objs)


def test_a_stopped_leader_releases_the_lease_and_the_standby_takes_over_at_once(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    """What a rolling upgrade does: the old pod gets SIGTERM while the new one stands by."""
    prepare_namespace(kube, namespace)
    old, new = (replica(world, namespace, tmp_path, name) for name in ("old", "new"))
    try:
        old.start()
        wait_holder(kube, namespace, "old", 120)
        new.start()
        wait_for("new standing by", lambda: "event=leader_waiting" in new.logs(), 60, new)
        create(kube, namespace, retrainjob("first", "s3://datasets/none", **QUEUED))
        wait_accepted(kube, namespace, ["first"], 120, old)
        stopping = time.monotonic()
        old.stop()
        stopped = time.monotonic() - stopping
        assert old.proc is not None and old.proc.returncode == 0
        assert "event=leader_released identity=old" in old.logs()
        wait_holder(kube, namespace, "new", 60)
        handover = time.monotonic() - stopping
        create(kube, namespace, retrainjob("second", "s3://datasets/none", **QUEUED))
        objs = wait_accepted(kube, namespace, ["first", "second"], 120, new)
        assert_stood_by(new)
    except BaseException:
        print(old.logs()[-20000:], new.logs()[-20000:])
        raise
    finally:
        old.kill()
        new.stop()
    print(
        f"\nhandover on SIGTERM: the old leader exited {stopped:.2f}s and the standby held the "
        f"lease {handover:.2f}s after the signal (retry 0.5s; the lease duration is 6s)"
    )
    assert_one_version_and_one_job_each(kube, namespace, objs)
    assert get(kube, namespace, "second")["status"]["phase"] == "Pending"


def test_a_leader_whose_lease_is_taken_exits_non_zero_and_a_stopped_standby_exits_zero(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    prepare_namespace(kube, namespace)
    leader, standby = (replica(world, namespace, tmp_path, name) for name in ("a", "b"))
    try:
        leader.start()
        wait_holder(kube, namespace, "a", 120)
        standby.start()
        wait_for("b standing by", lambda: "event=leader_waiting" in standby.logs(), 60, standby)
        # Another process writes itself in as the holder (as after a partition that outlasted
        # the lease): the leader must stop at its next renewal, not keep reconciling.
        coordination = client.CoordinationV1Api(kube)

        def intrude() -> bool:
            # Read-modify-replace, as another elector would: a renewal of the leader between
            # the read and the replace is a 409 (wait_for reads again and retries).
            body = coordination.read_namespaced_lease(LEASE, namespace)
            body.spec.holder_identity = "intruder"
            body.spec.lease_duration_seconds = 3600
            coordination.replace_namespaced_lease(LEASE, namespace, body)
            return True

        wait_for("the lease written by an intruder", intrude, 30)
        assert leader.proc is not None
        assert leader.proc.wait(timeout=60) == EXIT_LEADERSHIP_LOST
        assert "event=leader_lost identity=a holder=intruder" in leader.logs()
        standby.stop()
        assert standby.proc is not None and standby.proc.returncode == 0
        assert_stood_by(standby)
    except BaseException:
        print(leader.logs()[-20000:], standby.logs()[-20000:])
        raise
    finally:
        leader.kill()
        standby.kill()
    assert lease(kube, namespace)["holder"] == "intruder", "a standby took a held lease"
