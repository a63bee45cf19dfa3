"""The operator at scale on the local world (issue 22; `make bench-scale`, small in `make bench`).

The load at RETRAINER_SCALE=1: 100 namespaces; 1,000 ModelLines, of which 100 run on the
schedule `* * * * *`, 100 poll a corrections prefix of 1,000 objects every 60 s and 100 scrub
every 60 s; 10,000 RetrainJobs applied at 50/s, spread over the lines. Every count but the
corrections prefix and the rate scales with RETRAINER_SCALE (default 0.02 here, so `make
bench` stays short: 2 namespaces, 20 lines, 200 RetrainJobs). The trainer is the stand-in
image (`retrainer-bench-trainer`, a Job of about a second), so the figures are the
operator's.

One run, in phases: lines created (schedules suspended) -> operator started -> idle window
(baseline RSS and CPU, requests) -> schedules resumed, RetrainJobs applied at the rate,
drained -> a new correction uploaded (-> a run per corrections line) -> schedules suspended
-> idle window again. The operator reaches the apiserver and MLflow through counting proxies
(scale_support.CountingProxy), so requests are the operator's own whatever else uses the
world; apiserver_request_total (every client) is printed beside them.

Printed: RSS and CPU idle / under load (baseline: idle RSS), apply -> Job created p50/p99
(baseline: the apiserver's own create latency, of the same applies), Job complete -> Verified,
schedule slot -> run created, new corrections -> run created, requests per minute when idle,
status writes per line when idle, the largest ModelLine status, wall time to drain; each with
its goal. Asserted: correctness only (every run Succeeded and Verified, no version number used
twice in a line, the ledger agrees), never speed.

Knobs: RETRAINER_SCALE, RETRAINER_SCALE_RATE (applies/s, 50), RETRAINER_SCALE_IDLE_S (each
idle window, 75), RETRAINER_SCALE_PROFILE=1 (the operator samples its stacks; the busiest
functions are printed at the end; =memory: where its memory was held at its highest),
RETRAINER_SCALE_OUT=<folder> (keep the operator's log),
RETRAINER_SCALE_OPERATOR_PATH=<folder> (run the retrainer_operator package found there: the
same load against another version of the operator).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import datetime
import io
import json
import math
import os
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from retrainer_contract import api
from retrainer_world.health import tls_client_context
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
    apiserver_requests,
    delta,
    percentile,
    profiler_env,
    proxy_kubeconfig,
)

SCALE = float(os.environ.get("RETRAINER_SCALE", "0.02"))
RATE = float(os.environ.get("RETRAINER_SCALE_RATE", "50"))
IDLE_S = float(os.environ.get("RETRAINER_SCALE_IDLE_S", "75"))
PROFILE = os.environ.get("RETRAINER_SCALE_PROFILE", "") in ("1", "true", "yes", "memory")
MEMORY_PROFILE = os.environ.get("RETRAINER_SCALE_PROFILE", "") == "memory"
# A folder to keep the operator's log (and profile) in after the run.
KEEP_IN = os.environ.get("RETRAINER_SCALE_OUT", "")
# A folder holding another retrainer_operator package to run instead (an A/B comparison).
OPERATOR_PATH = os.environ.get("RETRAINER_SCALE_OPERATOR_PATH", "")
STANDIN_IMAGE = "retrainer-bench-trainer"


def _scaled(full: int, least: int = 1) -> int:
    return max(least, round(full * SCALE))


NAMESPACES = _scaled(100)
SCHEDULED, CORRECTED, SCRUBBED = _scaled(100), _scaled(100), _scaled(100)
LINES = max(SCHEDULED + CORRECTED + SCRUBBED + 1, _scaled(1000))
RUNS = max(LINES, _scaled(10000))
CORRECTION_OBJECTS = 1000  # per prefix, whatever the scale: what one poll lists
POLL_S = 60
SCRUB_S = 60
BUCKET = "scale-bench"
KEEP = {"succeeded": 1000, "failed": 1000}  # keep every run: correctness reads them all
TEMPLATE: dict[str, Any] = {
    "baseModel": {"architecture": "yolo11n.yaml"},
    "dataset": {"uri": "s3://datasets/none"},
    "training": {"epochs": 1, "imgsz": 64, "batch": 4},
    "resources": {"cpu": "10m", "memory": "64Mi"},
}
GOALS = {"rss_mib": 300.0, "apply_job_p99_s": 2.0, "slot_run_p99_s": 10.0}
G, V = "retrainer.dev", "v1alpha1"


# ---- the load -----------------------------------------------------------------------------


class Load:
    """The namespaces and lines of one run, named after a token so runs never meet."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(3)
        self.namespaces = [f"scale-{self.token}-{i:03d}" for i in range(NAMESPACES)]
        self.lines: list[tuple[str, str, str]] = []  # (namespace, name, kind)
        for i in range(LINES):
            if i < SCHEDULED:
                kind = "sch"
            elif i < SCHEDULED + CORRECTED:
                kind = "cor"
            elif i < SCHEDULED + CORRECTED + SCRUBBED:
                kind = "scr"
            else:
                kind = "pln"
            self.lines.append(
                (self.namespaces[i % NAMESPACES], f"{kind}{i:04d}-{self.token}", kind)
            )
        self.prefix = f"{self.token}/"

    @property
    def corrections_uri(self) -> str:
        return f"s3://{BUCKET}/{self.token}"

    def spec(self, kind: str) -> dict[str, Any]:
        if kind == "sch":
            schedule = {"cron": "* * * * *", "concurrencyPolicy": "Allow", "suspend": True}
            return {"template": TEMPLATE, "schedule": schedule, "historyLimits": KEEP}
        if kind == "cor":
            watched = {
                "uri": self.corrections_uri,
                "minNew": CORRECTION_OBJECTS + 1,
                "pollIntervalSeconds": POLL_S,
            }
            return {"template": TEMPLATE, "corrections": watched, "historyLimits": KEEP}
        if kind == "scr":
            return {"template": TEMPLATE, "scrub": {"intervalSeconds": SCRUB_S}}
        return {"template": TEMPLATE}

    def mine(self, namespace: str | None) -> bool:
        return bool(namespace) and str(namespace).startswith(f"scale-{self.token}-")


def _upload_corrections(world: World, load: Load) -> None:
    store = world.minio_client()
    if not store.bucket_exists(BUCKET):
        with contextlib.suppress(Exception):
            store.make_bucket(BUCKET)
    body = b"0 0.5 0.5 0.1 0.1\n"

    def put(i: int) -> None:
        key = f"{load.prefix}labels/train/c{i:04d}.txt"
        store.put_object(BUCKET, key, io.BytesIO(body), len(body))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(CORRECTION_OBJECTS)))


def _remove_corrections(world: World, load: Load) -> None:
    from minio.deleteobjects import DeleteObject

    store = world.minio_client()
    with contextlib.suppress(Exception):
        doomed = [
            DeleteObject(o.object_name)
            for o in store.list_objects(BUCKET, prefix=load.prefix, recursive=True)
        ]
        for _ in store.remove_objects(BUCKET, doomed):
            pass


# ---- what the bench sees ------------------------------------------------------------------


def _true(obj: dict[str, Any], type_: str) -> bool:
    return any(
        c.get("type") == type_ and c.get("status") == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


class Seen:
    """Arrival times of RetrainJobs and Jobs in the load's namespaces (bench-side watches)."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.lock = threading.Lock()
        self.rj_seen: dict[tuple[str, str], tuple[float, float]] = {}  # (mono, wall)
        self.rj_meta: dict[tuple[str, str], dict[str, Any]] = {}
        self.rj_verified: dict[tuple[str, str], float] = {}
        self.rj_done: dict[tuple[str, str], str] = {}
        self.job_created: dict[tuple[str, str], float] = {}
        self.job_complete: dict[tuple[str, str], float] = {}

    def on_retrainjob(self, type_: str, obj: dict[str, Any], mono: float, wall: float) -> None:
        meta = obj.get("metadata") or {}
        if type_ == "DELETED" or not self.load.mine(meta.get("namespace")):
            return
        key = (meta["namespace"], meta["name"])
        with self.lock:
            if key not in self.rj_seen:
                self.rj_seen[key] = (mono, wall)
                self.rj_meta[key] = {
                    "trigger": (meta.get("labels") or {}).get(api.LABEL_TRIGGER, ""),
                    "slot": (meta.get("annotations") or {}).get(api.SCHEDULED_TIME_ANNOTATION),
                    "model": (obj.get("spec") or {}).get("model"),
                }
            if _true(obj, "Verified"):
                self.rj_verified.setdefault(key, mono)
            phase = (obj.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                self.rj_done[key] = phase

    def on_job(self, type_: str, obj: dict[str, Any], mono: float, wall: float) -> None:
        meta = obj.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(api.LABEL_RETRAINJOB)
        if type_ == "DELETED" or not owner or not self.load.mine(meta.get("namespace")):
            return
        key = (meta["namespace"], owner)
        with self.lock:
            self.job_created.setdefault(key, mono)
            if _true(obj, "Complete"):
                self.job_complete.setdefault(key, mono)

    def triggered(self, trigger: str) -> dict[tuple[str, str], dict[str, Any]]:
        with self.lock:
            return {k: m for k, m in self.rj_meta.items() if m["trigger"] == trigger}

    def unfinished(self) -> list[tuple[str, str]]:
        with self.lock:
            return [k for k in self.rj_seen if k not in self.rj_done]


def _wait(what: str, probe: Any, timeout: float, operator: Operator, every: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        if operator.proc is not None and operator.proc.poll() is not None:
            raise AssertionError(f"the operator exited while waiting for {what}")
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _lines_ready(custom: client.CustomObjectsApi, load: Load) -> int:
    ready = 0
    for namespace in load.namespaces:
        items = custom.list_namespaced_custom_object(G, V, namespace, "modellines")["items"]
        ready += sum(1 for line in items if _true(line, "Ready"))
    return ready


def _set_suspended(custom: client.CustomObjectsApi, load: Load, suspend: bool) -> None:
    def patch(entry: tuple[str, str, str]) -> None:
        namespace, name, _ = entry
        custom.patch_namespaced_custom_object(
            G, V, namespace, "modellines", name, {"spec": {"schedule": {"suspend": suspend}}}
        )

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(patch, [e for e in load.lines if e[2] == "sch"]))


class Window:
    """Requests, status writes and CPU of the operator over a window of wall time."""

    def __init__(self, name: str, op: ProcStats, proxies: dict[str, CountingProxy], metrics: Any):
        self.name, self.op, self.proxies, self.metrics = name, op, proxies, metrics

    def __enter__(self) -> Window:
        self.start = time.monotonic()
        self.wall = time.time()
        self.cpu0 = self.op.cpu_seconds()
        self.snap0 = {k: p.snapshot() for k, p in self.proxies.items()}
        self.all0 = self.metrics()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.monotonic() - self.start
        self.cpu = (self.op.cpu_seconds() - self.cpu0) / self.seconds
        snap1 = {k: p.snapshot(self.wall) for k, p in self.proxies.items()}
        # (count, p50 s, p99 s) of each kind of request started in the window.
        self.latency = {k: snap1[k]["latency"] for k in self.proxies}
        self.requests = {
            k: delta(snap1[k]["requests"], self.snap0[k]["requests"]) for k in self.proxies
        }
        self.objects = delta(snap1["apiserver"]["objects"], self.snap0["apiserver"]["objects"])
        self.all_requests = delta(self.metrics(), self.all0)

    def per_min(self, count: float) -> float:
        return count * 60 / self.seconds


# ---- the report ---------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


def _row(
    metric: str, value: str, baseline: str = "", ratio: str = "", goal: str = "", met: str = ""
) -> str:
    return f"  {metric:<44} {value:>14} {baseline:>18} {ratio:>8}  {goal:<34} {met}"


def _met(ok: bool | None) -> str:
    return "" if ok is None else ("met" if ok else "MISSED")


def _top(counts: dict[str, int], n: int = 12) -> str:
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{k}={v}" for k, v in ordered) or "none"


# ---- the benchmark ------------------------------------------------------------------------


@pytest.fixture
def load(world: World, kube: client.ApiClient, kubectl: Any) -> Iterator[Load]:
    apply_crd(kubectl)
    wait_until_served(kubectl)
    the_load = Load()
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda ns: create_namespace(kube, world, ns), the_load.namespaces))
        _upload_corrections(world, the_load)
        yield the_load
    finally:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda ns: release_and_delete(kube, ns), the_load.namespaces))
        _remove_corrections(world, the_load)


def slowest_verified(seen: Any, n: int) -> str:
    """The RetrainJobs that waited longest from their Job's Complete to Verified, how they
    were made, and when their Job completed (after the first one): where to look in the
    operator's log."""
    first = min(seen.job_complete.values(), default=0.0)
    waits = sorted(
        (
            (seen.rj_verified[k] - seen.job_complete[k], k)
            for k in seen.job_complete
            if k in seen.rj_verified
        ),
        reverse=True,
    )[:n]
    shown = []
    for wait, key in waits:
        trigger = seen.rj_meta.get(key, {}).get("trigger") or "apply"
        done = seen.job_complete[key] - first
        shown.append(f"{key[0]}/{key[1]} {wait:.1f} s ({trigger}, complete at +{done:.1f} s)")
    return ", ".join(shown)


def test_operator_at_scale(
    world: World, kube: client.ApiClient, load: Load, tmp_path: Path
) -> None:
    custom = client.CustomObjectsApi(kube)
    pki = world.layout.pki
    context = tls_client_context(pki.ca_cert, pki.admin_cert, pki.admin_key)
    all_requests = lambda: apiserver_requests(world.server, context)  # noqa: E731

    # ModelLines first (schedules suspended), so the operator starts with its whole load.
    def create_line(entry: tuple[str, str, str]) -> None:
        namespace, name, kind = entry
        body = {"apiVersion": f"{G}/{V}", "kind": "ModelLine", "metadata": {"name": name}}
        custom.create_namespaced_custom_object(
            G, V, namespace, "modellines", {**body, "spec": load.spec(kind)}
        )

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(create_line, load.lines))

    upstream = world.server.removeprefix("https://")
    with contextlib.ExitStack() as stack:
        apiserver = stack.enter_context(
            CountingProxy("apiserver", upstream, (pki.ca_cert, pki.admin_cert, pki.admin_key))
        )
        mlflow = stack.enter_context(
            CountingProxy("mlflow", world.mlflow_uri.removeprefix("http://"))
        )
        proxies = {"apiserver": apiserver, "mlflow": mlflow}
        profile_out = tmp_path / "operator-profile.txt"
        env = {
            "KUBECONFIG": str(proxy_kubeconfig(tmp_path / "kubeconfig.json", apiserver.url)),
            "RETRAINER_NAMESPACES": ",".join(load.namespaces),
            "RETRAINER_MLFLOW_TRACKING_URI": mlflow.url,
            "RETRAINER_TRAINER_IMAGE": STANDIN_IMAGE,
            "RETRAINER_ALLOWED_TRAINER_IMAGES": STANDIN_IMAGE,
            # The chart's defaults, not the integration tier's fast ones.
            "RETRAINER_PROGRESS_INTERVAL": "10",
            "RETRAINER_LINE_INTERVAL": "10",
            "RETRAINER_METRICS_PORT": str(free_port()),
            "MALLOC_ARENA_MAX": "2",  # as the operator image sets it (operator/Dockerfile)
            **(profiler_env(tmp_path / "profiler", profile_out, MEMORY_PROFILE) if PROFILE else {}),
        }
        if OPERATOR_PATH:
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (OPERATOR_PATH, env.get("PYTHONPATH", "")) if p
            )
        operator = Operator(world, load.namespaces[0], tmp_path, **env)
        seen = Seen(load)
        stack.enter_context(RawWatch(kube, f"/apis/{G}/{V}/retrainjobs", "", seen.on_retrainjob))
        stack.enter_context(
            RawWatch(
                kube, "/apis/batch/v1/jobs", f"{api.LABEL_NAME}={api.TRAINER_NAME}", seen.on_job
            )
        )
        started = time.monotonic()
        operator.start()
        stack.callback(operator.stop)
        assert operator.proc is not None
        op = ProcStats(operator.proc.pid)
        try:
            _wait(
                f"{LINES} ModelLines Ready",
                lambda: _lines_ready(custom, load) == LINES,
                120 + LINES * 0.5,
                operator,
            )
            ready_s = time.monotonic() - started
            time.sleep(10)

            # Idle, before any RetrainJob: the baseline.
            with Window("idle", op, proxies, all_requests) as idle_before:
                time.sleep(IDLE_S)
            rss_idle = op.rss_mib()

            # Load: schedules resumed, RetrainJobs applied at RATE, drained.
            _set_suspended(custom, load, False)
            resumed_wall = time.time()
            applied: dict[tuple[str, str], float] = {}
            create_took: list[float] = []

            def apply(i: int) -> None:
                namespace, line, _ = load.lines[i % LINES]
                name = f"{line}-r{i:05d}"
                body = {
                    "apiVersion": f"{G}/{V}",
                    "kind": "RetrainJob",
                    "metadata": {"name": name, "labels": {"retrainer.dev/bench": load.token}},
                    "spec": {**TEMPLATE, "model": line},
                }
                begin = time.monotonic()
                applied[(namespace, name)] = begin
                custom.create_namespaced_custom_object(G, V, namespace, "retrainjobs", body)
                create_took.append(time.monotonic() - begin)

            with PeakSampler(op) as peak, Window("load", op, proxies, all_requests) as loaded:
                first = time.monotonic()
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    futures = []
                    for i in range(RUNS):
                        pause = first + i / RATE - time.monotonic()
                        if pause > 0:
                            time.sleep(pause)
                        futures.append(pool.submit(apply, i))
                    for future in futures:
                        future.result()
                applying_s = time.monotonic() - first
                _wait(
                    f"{RUNS} applied RetrainJobs finished",
                    lambda: all(k in seen.rj_done for k in applied),
                    900 + RUNS * 1.0,
                    operator,
                )
                drain_s = time.monotonic() - first

                # New corrections: one more object than minNew needs, seen by every
                # corrections line at its next poll.
                store = world.minio_client()
                added = f"{load.prefix}labels/train/new.txt"
                corrected_at = time.monotonic()
                store.put_object(BUCKET, added, io.BytesIO(b"0 0.5 0.5 0.2 0.2\n"), 18)
                corr_lines = {(ns, name) for ns, name, kind in load.lines if kind == "cor"}
                _wait(
                    f"a corrections run of each of {len(corr_lines)} lines",
                    lambda: (
                        corr_lines
                        <= {(k[0], m["model"]) for k, m in seen.triggered("corrections").items()}
                    ),
                    POLL_S * 3 + 60,
                    operator,
                )
                _set_suspended(custom, load, True)
                suspended_wall = time.time()
                _wait("every run finished", lambda: not seen.unfinished(), 600, operator)
            rss_peak = max(peak.peak, op.peak_mib())
            # One poll interval first: the corrections lines look up their new versions once.
            time.sleep(POLL_S + 5)

            # Idle again, with every version made.
            with Window("idle after", op, proxies, all_requests) as idle_after:
                time.sleep(IDLE_S)
            rss_after = op.rss_mib()
        except BaseException:
            sys.stderr.write(operator.logs()[-20000:])
            raise
        finally:
            operator.stop()
            if KEEP_IN:
                Path(KEEP_IN).mkdir(parents=True, exist_ok=True)
                for kept in (operator.log_path, profile_out):
                    if kept.exists():
                        shutil.copy(kept, Path(KEEP_IN) / kept.name)

    # ---- correctness (asserted) ----
    problems: list[str] = []
    versions: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
    largest_status = (0, "")
    ledger_checked = 0
    for namespace in load.namespaces:
        runs = custom.list_namespaced_custom_object(G, V, namespace, "retrainjobs")["items"]
        for run in runs:
            status = run.get("status") or {}
            name = run["metadata"]["name"]
            if status.get("phase") != "Succeeded" or not _true(run, "Verified"):
                problems.append(f"{namespace}/{name}: phase {status.get('phase')}, not verified")
            if isinstance(status.get("version"), int):
                versions[(namespace, run["spec"]["model"])].append(status["version"])
        uids = {
            r["metadata"]["uid"]: (r["spec"]["model"], (r.get("status") or {}).get("version"))
            for r in runs
        }
        for line in custom.list_namespaced_custom_object(G, V, namespace, "modellines")["items"]:
            status = line.get("status") or {}
            size = len(json.dumps(status, separators=(",", ":")).encode())
            if size > largest_status[0]:
                largest_status = (size, f"{namespace}/{line['metadata']['name']}")
            ledger = status.get("ledger") or {}
            for key, value in ledger.items():
                if not key.startswith("uid."):
                    continue
                uid = key.removeprefix("uid.")
                if uid not in uids:
                    continue
                ledger_checked += 1
                model, version = uids[uid]
                entry = json.loads(ledger.get(f"v.{value}", "{}"))
                if model != line["metadata"]["name"] or int(value) != version:
                    problems.append(
                        f"ledger of {line['metadata']['name']}: {key} -> {value}, "
                        f"run says {version}"
                    )
                elif entry and entry.get("state") != "verified":
                    problems.append(
                        f"ledger of {line['metadata']['name']}: v.{value} is {entry.get('state')}"
                    )
    reused = {
        f"{ns}/{m}": sorted(vs) for (ns, m), vs in versions.items() if len(vs) != len(set(vs))
    }
    total_runs = sum(len(vs) for vs in versions.values())

    # ---- figures ----
    to_job = [seen.job_created[k] - t for k, t in applied.items() if k in seen.job_created]
    to_verified = [
        seen.rj_verified[k] - seen.job_complete[k]
        for k in seen.job_complete
        if k in seen.rj_verified
    ]
    slot_delays = []
    for key, meta in seen.triggered("schedule").items():
        slot = datetime.datetime.fromisoformat(str(meta["slot"]).replace("Z", "+00:00")).timestamp()
        if resumed_wall < slot < suspended_wall:
            slot_delays.append(seen.rj_seen[key][1] - slot)
    corr_delays = [
        seen.rj_seen[k][0] - corrected_at
        for k in seen.triggered("corrections")
        if seen.rj_seen[k][0] >= corrected_at
    ]
    c50, c99 = percentile(create_took, 50), percentile(create_took, 99)
    j50, j99 = percentile(to_job, 50), percentile(to_job, 99)
    kinds = collections.Counter(kind for _, _, kind in load.lines)
    kind_of = {f"{ns}/{name}": kind for ns, name, kind in load.lines}

    def writes_by_kind(window: Window) -> dict[str, float]:
        """Status writes per line per minute, by kind of line."""
        counted: collections.Counter[str] = collections.Counter()
        for key, n in window.objects.items():
            sub, _, obj = key.partition(" ")
            if sub == "status" and obj in kind_of:
                counted[kind_of[obj]] += n
        return {k: window.per_min(counted[k]) / kinds[k] for k in sorted(kinds)}

    def mlflow_per_poll(window: Window) -> float:
        polls = window.seconds / POLL_S * kinds["cor"]
        return sum(window.requests["mlflow"].values()) / polls

    names = {"sch": "schedule", "cor": "corrections", "scr": "scrub", "pln": "plain"}
    lines_out = [
        "",
        f"SCALE scale={SCALE} namespaces={NAMESPACES} lines={LINES} (schedule {SCHEDULED}, "
        f"corrections {CORRECTED}, scrub {SCRUBBED}) retrainjobs={RUNS} applied at {RATE:.0f}/s "
        f"(took {applying_s:.1f}s); runs made in all: {total_runs}; lines Ready {ready_s:.0f}s "
        f"after start",
        _row("metric", "measured", "baseline", "ratio", "goal", ""),
        _row("operator RSS idle (MiB)", f"{rss_idle:.0f}", "", "1.00x", "", ""),
        _row(
            "operator RSS peak under load (MiB)",
            f"{rss_peak:.0f}",
            f"idle {rss_idle:.0f}",
            f"{rss_peak / rss_idle:.2f}x",
            f"<= {GOALS['rss_mib']:.0f} MiB",
            _met(rss_peak <= GOALS["rss_mib"]),
        ),
        _row(
            "operator RSS idle after drain (MiB)",
            f"{rss_after:.0f}",
            f"idle {rss_idle:.0f}",
            f"{rss_after / rss_idle:.2f}x",
        ),
        _row("operator CPU idle (cores)", f"{idle_before.cpu:.2f}"),
        _row("operator CPU under load (cores)", f"{loaded.cpu:.2f}", f"idle {idle_before.cpu:.2f}"),
        _row(
            "operator CPU idle after drain (cores)",
            f"{idle_after.cpu:.2f}",
            f"idle {idle_before.cpu:.2f}",
        ),
        _row(
            "apply -> Job created p50",
            _ms(j50),
            f"create p50 {_ms(c50)}",
            f"{j50 / c50:.1f}x",
        ),
        _row(
            "apply -> Job created p99",
            _ms(j99),
            f"create p99 {_ms(c99)}",
            f"{j99 / c99:.1f}x",
            f"<= {GOALS['apply_job_p99_s']:.0f} s",
            _met(j99 <= GOALS["apply_job_p99_s"]),
        ),
        _row(
            "Job complete -> Verified p50 / p99",
            f"{_ms(percentile(to_verified, 50))} / {_ms(percentile(to_verified, 99))}",
            f"create p99 {_ms(c99)}",
            f"{percentile(to_verified, 99) / c99:.1f}x",
        ),
        _row(
            f"schedule slot -> run created p50 / p99 (n={len(slot_delays)})",
            f"{_ms(percentile(slot_delays, 50))} / {_ms(percentile(slot_delays, 99))}",
            "line interval 10 s",
            "",
            f"p99 <= {GOALS['slot_run_p99_s']:.0f} s",
            _met(percentile(slot_delays, 99) <= GOALS["slot_run_p99_s"]) if slot_delays else "",
        ),
        _row(
            f"new corrections -> run created p50 / p99 (n={len(corr_delays)})",
            f"{_ms(percentile(corr_delays, 50))} / {_ms(percentile(corr_delays, 99))}",
            f"poll {POLL_S} s",
        ),
        _row(
            "wall time to drain (first apply -> all done)",
            f"{drain_s:.0f} s",
            f"applying {applying_s:.0f} s",
        ),
        _row(
            "largest ModelLine status (bytes)",
            f"{largest_status[0]}",
            "",
            "",
            "< 1 MiB object limit",
            _met(largest_status[0] < 1 << 20),
        ),
    ]
    for window in (idle_before, idle_after):
        api_total = sum(window.requests["apiserver"].values())
        everyone = sum(window.all_requests.values())
        per_poll = mlflow_per_poll(window)
        writes = writes_by_kind(window)
        quiet = {k: v for k, v in writes.items() if k in ("pln", "cor")}
        lines_out += [
            _row(
                f"{window.name}: apiserver requests/min (operator)",
                f"{window.per_min(api_total):.0f}",
                f"all clients {window.per_min(everyone):.0f}",
                f"{window.per_min(api_total) / LINES:.1f}/ln",
            ),
            _row(
                f"{window.name}: MLflow requests/min (operator)",
                f"{window.per_min(sum(window.requests['mlflow'].values())):.0f}",
                "",
                f"{per_poll:.2f}/pl",
                "<= 1 per corrections line per poll",
                _met(per_poll <= 1.0),
            ),
            _row(
                f"{window.name}: status writes/line/min, plain+corr",
                " ".join(f"{names[k][:4]}={v:.2f}" for k, v in quiet.items()),
                "",
                "",
                "0 (nothing due)",
                _met(all(v == 0 for v in quiet.values())),
            ),
            _row(
                f"{window.name}: status writes/line/min, sched+scrub",
                " ".join(
                    f"{names[k][:5]}={v:.2f}" for k, v in writes.items() if k in ("sch", "scr")
                ),
                "",
                "",
                "slot / scrub results (due work)",
            ),
            f"    operator apiserver requests: {_top(window.requests['apiserver'])}",
            f"    operator MLflow requests: {_top(window.requests['mlflow'])}",
            f"    all clients (apiserver_request_total): {_top(window.all_requests, 8)}",
        ]

    def answers(latency: dict[str, list[float]], n: int) -> str:
        ordered = sorted(latency.items(), key=lambda kv: -kv[1][0])[:n]
        return ", ".join(
            f"{k} {c:.0f}x {p50 * 1000:.0f}/{p99 * 1000:.0f}" for k, (c, p50, p99) in ordered
        )

    lines_out += [
        "  load: answer times p50/p99 ms, apiserver: " + answers(loaded.latency["apiserver"], 8),
        "  load: answer times p50/p99 ms, MLflow: " + answers(loaded.latency["mlflow"], 5),
        f"  load: operator apiserver requests {_top(loaded.requests['apiserver'], 16)}",
        f"  load: operator MLflow requests {_top(loaded.requests['mlflow'], 8)}",
        "  slowest Job complete -> Verified: " + slowest_verified(seen, 3),
        f"  correctness: {total_runs} runs, {ledger_checked} ledger entries checked, "
        f"{len(problems)} problems, {len(reused)} lines with a reused number",
    ]
    print("\n".join(lines_out))
    if PROFILE:
        assert profile_out.exists(), "the profiler wrote nothing: see the operator's log"
        kind = "traced memory" if MEMORY_PROFILE else "sampled stacks"
        print(f"\nSCALE operator profile ({kind}):\n" + profile_out.read_text()[:24000])
    assert not reused, reused
    assert not problems, problems[:20]
    assert total_runs >= RUNS + CORRECTED
