"""Operator benchmarks on the local world: reaction latencies and memory, with baselines.

- apply -> training Job created, and training Job complete -> RetrainJob Succeeded, p50/p95
  over 100 RetrainJobs (the stand-in trainer image `retrainer-bench-trainer` finishes in
  about a second, so the figures are the operator's, not Ultralytics'); baseline: the
  apiserver's own create latency measured in the same run.
- the operator's peak RSS with 1000 RetrainJobs present; baseline: its peak RSS watching an
  empty namespace, measured in the same run.

Figures are printed (run with `make bench`, i.e. pytest -s); the only assertions are about
correctness, never about speed.
"""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, watch
from retrainer_operator.config import image_repository
from retrainer_world.world import World

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from crd_fixture import apply_crd, wait_until_served
from operator_support import (
    GROUP,
    PLURAL,
    VERSION,
    Operator,
    create,
    prepare_namespace,
    retrainjob,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
STANDIN_IMAGE = "retrainer-bench-trainer"
# Overridable to check the benchmark itself quickly (e.g. RUNS=3 with another image).
IMAGE = os.environ.get("RETRAINER_BENCH_IMAGE", STANDIN_IMAGE)
RUNS = int(os.environ.get("RETRAINER_BENCH_RUNS", "100"))
# Seconds between applies. Every stand-in pod is a Python process the pod runner starts on
# this same 2-core machine, so a faster arrival rate measures CPU saturation, not the operator.
INTERVAL = float(os.environ.get("RETRAINER_BENCH_INTERVAL", "1.0"))
PRESENT = 1000


@pytest.fixture(scope="module")
def crd_applied(world: World, kubectl: Any) -> None:
    # Both CRDs: a RetrainJob of a line without a ModelLine gets a bare one, which needs its
    # CRD (the bench failed on a world where no test had applied it yet).
    apply_crd(kubectl)
    wait_until_served(kubectl)


def _standin_mapped() -> bool:
    images = yaml.safe_load(
        (ROOT / "tools" / "retrainer_world" / "kubelet" / "images.yaml").read_text()
    )
    return STANDIN_IMAGE in (images.get("images") or {})


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


class _Watcher:
    """Records when each Job appears / completes and when each RetrainJob finishes."""

    def __init__(self, world: World, namespace: str) -> None:
        self.api = config.new_client_from_config(config_file=str(world.kubeconfig))
        self.namespace = namespace
        self.job_created: dict[str, float] = {}
        self.job_finished: dict[str, float] = {}
        self.finished: dict[str, tuple[float, str]] = {}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._jobs, daemon=True),
            threading.Thread(target=self._retrainjobs, daemon=True),
        ]

    def __enter__(self) -> _Watcher:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self.api.close()

    def _jobs(self) -> None:
        batch = client.BatchV1Api(self.api)
        while not self._stop.is_set():
            for event in watch.Watch().stream(
                batch.list_namespaced_job, self.namespace, timeout_seconds=5
            ):
                job, now = event["object"], time.monotonic()
                owner = (job.metadata.labels or {}).get("retrainer.dev/retrainjob", "")
                self.job_created.setdefault(owner, now)
                if any(
                    c.type in ("Complete", "Failed") and c.status == "True"
                    for c in (job.status.conditions or [])
                ):
                    self.job_finished.setdefault(owner, now)

    def _retrainjobs(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        while not self._stop.is_set():
            for event in watch.Watch().stream(
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                timeout_seconds=5,
            ):
                obj, now = event["object"], time.monotonic()
                phase = (obj.get("status") or {}).get("phase")
                if phase in ("Succeeded", "Failed"):
                    self.finished.setdefault(obj["metadata"]["name"], (now, phase))


def _api_create_baseline(kube: client.ApiClient, namespace: str, count: int = 30) -> float:
    core = client.CoreV1Api(kube)
    took = []
    for i in range(count):
        start = time.monotonic()
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"baseline-{i}"}})
        took.append(time.monotonic() - start)
    return statistics.median(took)


@pytest.fixture
def operator(world: World, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    # The stand-in image is not the chart's trainer repository: allow it for the bench.
    allowed = image_repository(IMAGE) or IMAGE
    op = Operator(
        world,
        namespace,
        tmp_path,
        RETRAINER_PROGRESS_INTERVAL="10",
        RETRAINER_ALLOWED_TRAINER_IMAGES=allowed,
    )
    try:
        yield op
    finally:
        op.stop()


def test_operator_reaction_latency_over_100_retrainjobs(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd_applied: None,
    operator: Operator,
) -> None:
    if IMAGE == STANDIN_IMAGE and not _standin_mapped():
        pytest.fail(
            f"map the image {STANDIN_IMAGE!r} to tests/bench/standin_trainer.py in "
            "tools/retrainer_world/kubelet/images.yaml",
            pytrace=False,
        )
    prepare_namespace(kube, namespace)
    baseline = _api_create_baseline(kube, namespace)
    operator.start()
    names = [f"bench-{i:03d}" for i in range(RUNS)]
    applied: dict[str, float] = {}
    with _Watcher(world, namespace) as watcher:
        time.sleep(2)  # watches established, operator started
        for name in names:
            applied[name] = time.monotonic()
            create(
                kube,
                namespace,
                retrainjob(
                    name,
                    "s3://datasets/none",
                    image=IMAGE,
                    resources={"cpu": "10m", "memory": "64Mi"},
                ),
            )
            time.sleep(INTERVAL)  # a steady arrival rate, not one burst
        wait_for(
            f"{RUNS} finished RetrainJobs",
            lambda: len(watcher.finished) == RUNS,
            900,
            operator,
            interval=2,
        )
    failed = {n: p for n, (_, p) in watcher.finished.items() if p != "Succeeded"}
    if IMAGE == STANDIN_IMAGE:
        assert not failed, failed
    to_job = [watcher.job_created[n] - applied[n] for n in names]
    to_done = [watcher.finished[n][0] - watcher.job_finished[n] for n in names]
    (c50, c95), (d50, d95) = _percentiles(to_job), _percentiles(to_done)
    print(
        f"\nBENCH operator runs={RUNS} interval_s={INTERVAL} "
        f"api_create_baseline_ms={baseline * 1000:.1f}\n"
        f"BENCH apply->job_created p50_ms={c50 * 1000:.0f} p95_ms={c95 * 1000:.0f} "
        f"ratio_p50={c50 / baseline:.1f}x ratio_p95={c95 / baseline:.1f}x\n"
        f"BENCH job_finished->{'terminal' if failed else 'succeeded'} "
        f"p50_ms={d50 * 1000:.0f} p95_ms={d95 * 1000:.0f} "
        f"ratio_p50={d50 / baseline:.1f}x ratio_p95={d95 / baseline:.1f}x"
    )


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def _settle(pid: int, quiet_s: float = 3.0, timeout: float = 300) -> None:
    """Wait until the process used no CPU for `quiet_s` seconds."""

    def ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    deadline = time.monotonic() + timeout
    last, since = ticks(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = ticks()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
    raise AssertionError("operator never went idle")


def test_operator_peak_memory_with_1000_retrainjobs_present(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd_applied: None,
    operator: Operator,
) -> None:
    prepare_namespace(kube, namespace)
    operator.start()
    assert operator.proc is not None
    time.sleep(5)
    _settle(operator.proc.pid)
    baseline_kib = _peak_rss_kib(operator.proc.pid)
    operator.stop()

    custom = client.CustomObjectsApi(kube)

    def finished_retrainjob(i: int) -> None:
        name = f"present-{i:04d}"
        create(kube, namespace, retrainjob(name, "s3://datasets/none"))
        now = "2026-11-27T00:00:00Z"
        conditions = [
            {
                "type": t,
                "status": "True",
                "reason": r,
                "message": "bench",
                "lastTransitionTime": now,
            }
            for t, r in (
                ("Accepted", "JobCreated"),
                ("Complete", "TrainingComplete"),
                ("Verified", "AllLocationsVerified"),
            )
        ]
        custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": {"phase": "Succeeded", "version": i + 1, "conditions": conditions}},
        )

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(finished_retrainjob, range(PRESENT)))

    operator.start()
    assert operator.proc is not None
    time.sleep(5)
    _settle(operator.proc.pid)
    present_kib = _peak_rss_kib(operator.proc.pid)
    print(
        f"\nBENCH operator peak_rss_empty_mib={baseline_kib / 1024:.1f} "
        f"peak_rss_{PRESENT}_retrainjobs_mib={present_kib / 1024:.1f} "
        f"ratio={present_kib / baseline_kib:.2f}x"
    )
    assert operator.proc.poll() is None
