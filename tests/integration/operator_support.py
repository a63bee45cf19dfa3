"""Running the real operator against the local world, and waiting on what it does.

The operator runs as a subprocess (`.venv/bin/retrainer-operator`) watching only the test's
namespace, so SIGKILL is a real crash and tests never see each other's RetrainJobs. Helpers
here also prepare a namespace the way the chart would (claim, trainer ServiceAccount) and
upload the generated shapes dataset to MinIO.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from retrainer_contract import integrity, layout
from retrainer_demo import shapes
from retrainer_world.world import World

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_BIN = ROOT / ".venv" / "bin" / "retrainer-operator"
GROUP, VERSION, PLURAL = "retrainer.dev", "v1alpha1", "retrainjobs"
CLAIM = "retrainer-models"
TRAINER_SA = "retrainer-trainer"
DATASET_BUCKET = "datasets"
# A line template whose runs never train: their Job names a Kueue queue, and with no Kueue in
# the world it stays suspended, so a run stays active as long as a test needs.
QUEUED_TEMPLATE: dict[str, Any] = {
    "baseModel": {"architecture": "yolo11n.yaml"},
    "dataset": {"uri": "s3://datasets/none"},
    "training": {"epochs": 1, "imgsz": 64, "batch": 4, "extraArgs": {"workers": 0}},
    "resources": {"cpu": "1", "memory": "3Gi"},
    "scheduling": {"queueName": "nowhere"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Operator:
    """One retrainer-operator process for one namespace; restartable, killable."""

    def __init__(self, world: World, namespace: str, log_dir: Path, **env: str) -> None:
        self.world = world
        self.namespace = namespace
        self.log_dir = log_dir
        self.extra_env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.world.env(),
            "RETRAINER_NAMESPACES": self.namespace,
            "RETRAINER_MLFLOW_TRACKING_URI": self.world.mlflow_uri,
            "RETRAINER_S3_ENDPOINT": self.world.minio_endpoint,
            "RETRAINER_CLAIM_NAME": CLAIM,
            "RETRAINER_TRAINER_SERVICE_ACCOUNT": TRAINER_SA,
            "RETRAINER_METRICS_PORT": "0",
            "RETRAINER_HEALTH_PORT": str(free_port()),
            "RETRAINER_PROGRESS_INTERVAL": "1",
            "RETRAINER_LOG_FORMAT": "plain",
            **self.extra_env,
        }

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"operator-{self.starts}.log"

    def start(self) -> Operator:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(OPERATOR_BIN)],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to clean up, like a node crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        texts = []
        for i in range(1, self.starts + 1):
            path = self.log_dir / f"operator-{i}.log"
            if path.exists():
                texts.append(f"--- operator start {i} ---\n{path.read_text(errors='replace')}")
        return "\n".join(texts)


@contextlib.contextmanager
def running_operator(world: World, namespace: str, log_dir: Path, **env: str) -> Iterator[Operator]:
    operator = Operator(world, namespace, log_dir, **env).start()
    try:
        yield operator
    except BaseException:
        sys.stderr.write(operator.logs()[-20000:])
        raise
    finally:
        operator.stop()


@contextlib.contextmanager
def frozen(world: World, component: str) -> Iterator[None]:
    """Fault point: the world's `component` server frozen (SIGSTOP to its process group), so
    clients connect and then wait; resumed (SIGCONT) on leaving, whatever happened."""
    os.killpg(world.pids[component], signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(world.pids[component], signal.SIGCONT)


def prepare_namespace(kube: client.ApiClient, namespace: str) -> None:
    """What the chart provides per namespace: the claim and the trainer ServiceAccount."""
    core = client.CoreV1Api(kube)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": TRAINER_SA}})
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": CLAIM},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )


@contextlib.contextmanager
def operator_in_prepared_namespace(
    world: World, kube: client.ApiClient, namespace: str, log_dir: Path, **env: str
) -> Iterator[Operator]:
    """The usual test setup: the chart's per-namespace objects, then an operator watching."""
    prepare_namespace(kube, namespace)
    with running_operator(world, namespace, log_dir, **env) as operator:
        yield operator


def upload_dataset(world: World, tmp: Path, prefix: str, **kwargs: Any) -> str:
    """Generate the shapes dataset and upload it to MinIO; returns its s3:// URI."""
    return upload_folder(world, shapes.generate_dataset(tmp / prefix, **kwargs), prefix)


def upload_folder(world: World, folder: Path, prefix: str) -> str:
    """Upload a generated folder (a holdout, a regression set) to MinIO; its s3:// URI."""
    shapes.upload_folder(world.minio_client(), DATASET_BUCKET, prefix, folder)
    return f"s3://{DATASET_BUCKET}/{prefix}"


def retrainjob(name: str, dataset_uri: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "shapes",
        "baseModel": {"architecture": "yolo11n.yaml"},
        "dataset": {"uri": dataset_uri},
        "training": {"epochs": 2, "imgsz": 64, "batch": 4, "extraArgs": {"workers": 0}},
        "resources": {"cpu": "1", "memory": "3Gi"},
    }
    body.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RetrainJob",
        "metadata": {"name": name},
        "spec": body,
    }


def create(kube: client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return created


def get(kube: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return obj


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def wait_for(
    what: str,
    probe: Callable[[], Any],
    timeout: float,
    operator: Operator | None = None,
    interval: float = 0.5,
) -> Any:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(ApiException):
            last = probe()
            if last:
                return last
        if operator is not None and operator.proc is not None and operator.proc.poll() is not None:
            raise AssertionError(f"operator exited while waiting for {what}:\n{operator.logs()}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def wait_accepted(
    kube: client.ApiClient,
    namespace: str,
    names: list[str],
    timeout: float,
    operator: Operator | None = None,
) -> list[dict[str, Any]]:
    """Wait until every RetrainJob in `names` is Accepted; returns them in that order."""

    def all_accepted() -> list[dict[str, Any]] | None:
        objs = [get(kube, namespace, n) for n in names]
        ok = all(condition(o, "Accepted").get("status") == "True" for o in objs)
        return objs if ok else None

    accepted: list[dict[str, Any]] = wait_for(
        f"{len(names)} accepted RetrainJobs", all_accepted, timeout, operator
    )
    return accepted


def wait_phase(
    kube: client.ApiClient,
    namespace: str,
    name: str,
    phases: tuple[str, ...],
    timeout: float,
    operator: Operator | None = None,
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(kube, namespace, name)
        return obj if (obj.get("status") or {}).get("phase") in phases else None

    result: dict[str, Any] = wait_for(
        f"{namespace}/{name} phase in {phases}", probe, timeout, operator
    )
    return result


def jobs_of(kube: client.ApiClient, namespace: str, name: str) -> list[Any]:
    return list(
        client.BatchV1Api(kube)
        .list_namespaced_job(namespace, label_selector=f"retrainer.dev/retrainjob={name}")
        .items
    )


def pods_of(kube: client.ApiClient, namespace: str, job_name: str) -> list[Any]:
    return list(
        client.CoreV1Api(kube)
        .list_namespaced_pod(namespace, label_selector=f"job-name={job_name}")
        .items
    )


def events_of(
    kube: client.ApiClient, namespace: str, name: str, kind: str = "RetrainJob"
) -> list[Any]:
    """The core Events about object `name` of `kind`, oldest first."""
    events = (
        client.CoreV1Api(kube)
        .list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name},involvedObject.kind={kind}"
        )
        .items
    )
    events.sort(key=lambda e: (e.first_timestamp or e.event_time, e.metadata.creation_timestamp))
    return list(events)


def event_reasons(
    kube: client.ApiClient, namespace: str, name: str, kind: str = "RetrainJob"
) -> list[str]:
    return [e.reason for e in events_of(kube, namespace, name, kind)]


def _complete(job: Any) -> bool:
    return any(c.type == "Complete" and c.status == "True" for c in (job.status.conditions or []))


def job_complete(kube: client.ApiClient, namespace: str, job_name: str) -> bool:
    return _complete(client.BatchV1Api(kube).read_namespaced_job(job_name, namespace))


def wait_training_complete(
    kube: client.ApiClient, namespace: str, name: str, timeout: float
) -> None:
    """Wait for RetrainJob `name`'s training Job to complete; needs no running operator."""
    wait_for(
        "training Job complete",
        lambda: bool((j := jobs_of(kube, namespace, name)) and _complete(j[0])),
        timeout,
    )


LINE_PLURAL = "modellines"


def get_line(kube: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    line: dict[str, Any] = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, namespace, LINE_PLURAL, name
    )
    return line


def versions_ledger(kube: client.ApiClient, namespace: str, model: str) -> dict[str, str]:
    """The version sequence of a line: its ModelLine's status.ledger."""
    return dict((get_line(kube, namespace, model).get("status") or {}).get("ledger") or {})


def mlflow_json(world: World, path: str, payload: dict[str, Any] | None = None) -> Any:
    import urllib.request

    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(
        f"{world.mlflow_uri}{path}",
        data=data,
        method="POST" if data else "GET",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def run_of_uid(world: World, uid: str, experiment: str = "shapes") -> dict[str, Any]:
    """The one MLflow run the RetrainJob with `uid` trained into."""
    experiment_id = mlflow_json(
        world, f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}"
    )["experiment"]["experiment_id"]
    (run,) = mlflow_json(
        world,
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": [experiment_id], "filter": f"tags.`retrainer.uid` = '{uid}'"},
    )["runs"]
    found: dict[str, Any] = run
    return found


# ---- real training: how long it may take, and what a verified version must show ----

TRAIN_TIMEOUT = 420


def wait_finished(
    kube: client.ApiClient,
    namespace: str,
    name: str,
    operator: Operator,
    timeout: float = TRAIN_TIMEOUT,
) -> dict[str, Any]:
    return wait_phase(kube, namespace, name, ("Succeeded", "Failed"), timeout, operator)


def storage_root(world: World, namespace: str) -> Path:
    return world.state / "volumes" / namespace / CLAIM


def assert_verified_version(
    world: World, namespace: str, obj: dict[str, Any], version: int
) -> None:
    status = obj["status"]
    assert status["phase"] == "Succeeded", status
    assert status["version"] == version
    assert condition(obj, "Verified")["status"] == "True"
    assert condition(obj, "Complete")["status"] == "True"
    assert status["verification"]["verified"] is True
    artifacts = {a["name"]: a for a in status["artifacts"]}
    assert set(artifacts) == set(layout.ARTIFACT_NAMES)
    checks = status["verification"]["checks"]
    assert all(c["ok"] for c in checks), checks
    assert {"name": "mlflow", "by": "operator"}.items() <= next(
        c for c in checks if c["by"] == "operator"
    ).items()
    # What the status says is really there: claim files and the MinIO object.
    paths = layout.VersionPaths.for_version(storage_root(world, namespace), "shapes", version)
    for name, path in paths.claim_files().items():
        digest, size = integrity.sha256_file(path)
        assert (digest, size) == (artifacts[name]["sha256"], artifacts[name]["size"]), name
    bucket, key = layout.parse_s3_uri(artifacts["mlflow"]["uri"])
    digest, _ = integrity.sha256_object(world.minio_client(), bucket, key)
    assert digest == artifacts["mlflow"]["sha256"]
    assert set(status["metrics"]) >= {"precision", "recall", "mAP50", "mAP50_95"}
    assert status["mlflow"]["runId"]
    assert status["completionTime"]
