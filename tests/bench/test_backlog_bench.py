"""The operator taking over a backlog of RetrainJobs that wait for their first pass (issue 22).

At scale 1, ten thousand RetrainJobs arrive faster than a 2-core world gives them Jobs, and a
standby that takes over, or an operator restarted, finds all of them waiting at once. The scale
bench cannot run that load to the end here (its pods alone would take hours); this one makes
the backlog directly and never runs a pod:

- RETRAINER_BACKLOG RetrainJobs (10,000 at scale 1; `make bench`: 500) over one line per ten,
  in one namespace per hundred (as at scale 1), created while the operator is stopped. Each
  asks for a Kueue queue (`spec.scheduling.queueName`) that no Kueue serves: its Job is
  created suspended and stays so, and no pod runs.
- The operator starts (through a counting proxy): Kopf lists every RetrainJob at once, each a
  first pass waiting for a thread.

Printed, each with its baseline from the same run: the operator's RSS idle (started on the
same namespaces before the RetrainJobs existed) -> its peak while the backlog is worked (and
MiB per waiting RetrainJob) -> after; the time until every RetrainJob has its Job (first
passes a second); the operator's apiserver requests per RetrainJob. Asserted: correctness only
(every RetrainJob got a version, none twice in a line, and exactly one Job), never speed.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client
from retrainer_contract import api
from retrainer_world.world import World

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from crd_fixture import apply_crd, wait_until_served
from fleet_support import create_namespace, release_and_delete
from operator_support import Operator, free_port
from scale_support import (
    CountingProxy,
    PeakSampler,
    ProcStats,
    RawWatch,
    delta,
    profiler_env,
    proxy_kubeconfig,
)

BACKLOG = int(os.environ.get("RETRAINER_BACKLOG", "500"))
# RETRAINER_BACKLOG_PROFILE=1: the operator's busiest functions and, at its exit, what its
# memory is made of; =memory: where it is held at its highest (traced allocations: slow);
# either written to RETRAINER_BACKLOG_OUT (else printed), with =1 also a live dump of the
# memory by object type RETRAINER_BACKLOG_LIVE_S (20) after the start (scale_support).
PROFILE = os.environ.get("RETRAINER_BACKLOG_PROFILE", "") in ("1", "true", "yes", "memory")
MEMORY_PROFILE = os.environ.get("RETRAINER_BACKLOG_PROFILE", "") == "memory"
KEEP_IN = os.environ.get("RETRAINER_BACKLOG_OUT", "")
LINES = max(1, BACKLOG // 10)
NAMESPACES = max(1, BACKLOG // 100)  # as at scale 1: 100 RetrainJobs and 10 lines a namespace
STANDIN_IMAGE = "retrainer-bench-trainer"
TEMPLATE: dict[str, Any] = {
    "baseModel": {"architecture": "yolo11n.yaml"},
    "dataset": {"uri": "s3://datasets/none"},
    "training": {"epochs": 1, "imgsz": 64, "batch": 4},
    "resources": {"cpu": "10m", "memory": "64Mi"},
    "scheduling": {"queueName": "no-kueue-here"},  # the Job stays suspended: no pod runs
}
IDLE_S = 20
LIVE_DUMP_S = float(os.environ.get("RETRAINER_BACKLOG_LIVE_S", "20"))  # after the start
GOAL_RSS_MIB = 300.0
G, V = "retrainer.dev", "v1alpha1"


def _created_in(pool_size: int, work: Any, items: list[Any]) -> float:
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(pool_size) as pool:
        list(pool.map(work, items))
    return time.monotonic() - started


def _jobs_in(batch: client.BatchV1Api, namespaces: list[str]) -> int:
    """How many Jobs the namespaces hold (one page of one each: the count the apiserver
    gives beside it), without listing them."""
    total = 0
    for namespace in namespaces:
        page = batch.list_namespaced_job(namespace, limit=1)
        total += len(page.items) + int(page.metadata.remaining_item_count or 0)
    return total


def _jobs_by_owner(batch: client.BatchV1Api, namespaces: list[str]) -> dict[tuple[str, str], int]:
    """The training Jobs of each RetrainJob, listed."""
    found: dict[tuple[str, str], int] = collections.Counter()
    selector = f"{api.LABEL_NAME}={api.TRAINER_NAME}"
    for namespace in namespaces:
        for job in batch.list_namespaced_job(namespace, label_selector=selector).items:
            owner = (job.metadata.labels or {}).get(api.LABEL_RETRAINJOB)
            if owner:
                found[(namespace, owner)] += 1
    return found


def test_operator_taking_over_a_backlog_of_first_passes(
    world: World, kube: client.ApiClient, kubectl: Any, tmp_path: Path
) -> None:
    apply_crd(kubectl)
    wait_until_served(kubectl)
    custom = client.CustomObjectsApi(kube)
    token = secrets.token_hex(3)
    namespaces = [f"backlog-{token}-{i:02d}" for i in range(NAMESPACES)]
    lines = [(namespaces[i % NAMESPACES], f"line{i:04d}-{token}") for i in range(LINES)]
    runs = [(*lines[i % LINES], f"line{i % LINES:04d}-{token}-r{i:05d}") for i in range(BACKLOG)]

    jobs: dict[tuple[str, str], int] = collections.Counter()
    jobs_lock = threading.Lock()
    last_job = [0.0]

    def on_job(type_: str, obj: dict[str, Any], mono: float, wall: float) -> None:
        meta = obj.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(api.LABEL_RETRAINJOB)
        if type_ != "ADDED" or not owner or meta.get("namespace") not in namespaces:
            return
        with jobs_lock:
            jobs[(meta["namespace"], owner)] += 1
            last_job[0] = mono

    try:
        _created_in(4, lambda ns: create_namespace(kube, world, ns), namespaces)
        _created_in(
            8,
            lambda line: custom.create_namespaced_custom_object(
                G,
                V,
                line[0],
                "modellines",
                {
                    "apiVersion": f"{G}/{V}",
                    "kind": "ModelLine",
                    "metadata": {"name": line[1]},
                    "spec": {"template": TEMPLATE},
                },
            ),
            lines,
        )
        pki = world.layout.pki
        upstream = world.server.removeprefix("https://")
        with contextlib.ExitStack() as stack:
            proxy = stack.enter_context(
                CountingProxy("apiserver", upstream, (pki.ca_cert, pki.admin_cert, pki.admin_key))
            )
            env = {
                "KUBECONFIG": str(proxy_kubeconfig(tmp_path / "kubeconfig.json", proxy.url)),
                "RETRAINER_NAMESPACES": ",".join(namespaces),
                "RETRAINER_TRAINER_IMAGE": STANDIN_IMAGE,
                "RETRAINER_ALLOWED_TRAINER_IMAGES": STANDIN_IMAGE,
                "RETRAINER_PROGRESS_INTERVAL": "10",  # the chart's defaults
                "RETRAINER_LINE_INTERVAL": "10",
                "RETRAINER_METRICS_PORT": str(free_port()),
                "MALLOC_ARENA_MAX": "2",  # as the operator image sets it
            }

            # The baseline: the same operator on the same lines, with no RetrainJob.
            for folder in ("idle", "backlog"):
                (tmp_path / folder).mkdir()
            idle = Operator(world, namespaces[0], tmp_path / "idle", **env)
            idle.start()
            try:
                assert idle.proc is not None
                time.sleep(IDLE_S)
                rss_idle = ProcStats(idle.proc.pid).rss_mib()
            finally:
                idle.stop()

            # The backlog, made while no operator runs.
            create_s = _created_in(
                8,
                lambda run: custom.create_namespaced_custom_object(
                    G,
                    V,
                    run[0],
                    "retrainjobs",
                    {
                        "apiVersion": f"{G}/{V}",
                        "kind": "RetrainJob",
                        "metadata": {"name": run[2]},
                        "spec": {**TEMPLATE, "model": run[1]},
                    },
                ),
                runs,
            )
            stack.enter_context(
                RawWatch(
                    kube, "/apis/batch/v1/jobs", f"{api.LABEL_NAME}={api.TRAINER_NAME}", on_job
                )
            )
            before = proxy.snapshot()
            traced = tmp_path / "operator-memory.txt"
            if PROFILE:
                env.update(profiler_env(tmp_path / "profiler", traced, memory=MEMORY_PROFILE))
            operator = Operator(world, namespaces[0], tmp_path / "backlog", **env)
            started = time.monotonic()
            operator.start()
            stack.callback(operator.stop)
            assert operator.proc is not None
            stats = ProcStats(operator.proc.pid)
            deadline = started + 600 + BACKLOG * 0.5
            batch = client.BatchV1Api(kube)
            next_count, finished_at = started + 15, deadline
            live_at = started + LIVE_DUMP_S if PROFILE and not MEMORY_PROFILE else None
            with PeakSampler(stats, 0.5) as peak:
                while time.monotonic() < deadline:
                    if live_at is not None and time.monotonic() >= live_at:
                        operator.proc.send_signal(signal.SIGUSR1)  # the profiler's live dump
                        live_at = None
                    with jobs_lock:
                        done = len(jobs)
                    # The watch's count, checked against the apiserver's own (a watch that
                    # restarts after a 410 loses the events in between).
                    if done >= BACKLOG:
                        finished_at = last_job[0]
                        break
                    if time.monotonic() >= next_count and _jobs_in(batch, namespaces) >= BACKLOG:
                        finished_at = time.monotonic()  # within 15 s of the last Job
                        break
                    if time.monotonic() >= next_count:
                        next_count = time.monotonic() + 15
                    assert operator.proc.poll() is None, operator.logs()[-5000:]
                    time.sleep(1)
                worked_s = finished_at - started
                time.sleep(IDLE_S)
            rss_peak = max(peak.peak, stats.peak_mib())
            rss_after = stats.rss_mib()
            requests = proxy.snapshot()
            operator.stop()
            for kept in (traced, traced.with_name(traced.name + ".live")):
                if not kept.exists():
                    continue
                if KEEP_IN:
                    Path(KEEP_IN).mkdir(parents=True, exist_ok=True)
                    shutil.copy(kept, Path(KEEP_IN) / kept.name)
                else:
                    print(kept.read_text())

        # ---- correctness (asserted) ----
        problems: list[str] = []
        jobs = _jobs_by_owner(batch, namespaces)  # listed: what the apiserver holds
        versions: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
        for namespace in namespaces:
            for run in custom.list_namespaced_custom_object(G, V, namespace, "retrainjobs")[
                "items"
            ]:
                version = (run.get("status") or {}).get("version")
                key = (namespace, run["metadata"]["name"])
                if not isinstance(version, int):
                    problems.append(f"{key}: no version")
                    continue
                versions[(namespace, run["spec"]["model"])].append(version)
                if jobs.get(key) != 1:
                    problems.append(f"{key}: {jobs.get(key, 0)} Jobs")
        for line, numbers in versions.items():
            if len(numbers) != len(set(numbers)):
                problems.append(f"{line}: a version number used twice")
        total = sum(len(n) for n in versions.values())
        made = delta(requests["requests"], before["requests"])
        per_run = sum(made.values()) / max(1, BACKLOG)
        top = sorted(made.items(), key=lambda kv: -kv[1])[:10]
        by_kind = ", ".join(f"{k}={v}" for k, v in top)
        print(
            f"\nbacklog_bench RetrainJobs={BACKLOG} lines={LINES} namespaces={NAMESPACES} "
            f"created_in_s={create_s:.0f} ({BACKLOG / max(create_s, 1e-9):.0f}/s, no operator)"
            f"\n  operator RSS idle -> peak -> after (MiB)  {rss_idle:.0f} -> {rss_peak:.0f} -> "
            f"{rss_after:.0f}  (goal peak <= {GOAL_RSS_MIB:.0f}: "
            f"{'met' if rss_peak <= GOAL_RSS_MIB else 'missed'}); "
            f"{(rss_peak - rss_idle) * 1024 / max(1, BACKLOG):.1f} KiB per waiting RetrainJob"
            f"\n  every RetrainJob given its Job in {worked_s:.0f} s "
            f"({BACKLOG / max(worked_s, 1e-9):.1f} first passes/s)"
            f"\n  operator apiserver requests per RetrainJob {per_run:.1f}"
            f" ({by_kind})"
            f"\n  versioned {total}, problems {len(problems)}: {problems[:5]}"
        )
        assert not problems, problems[:20]
        assert total == BACKLOG
    finally:
        _created_in(4, lambda ns: release_and_delete(kube, ns), namespaces)
