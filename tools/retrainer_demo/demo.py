"""`make demo`: the whole product in one command, on the local world, in a few minutes.

Starts (or reuses) the world, installs the chart, runs the operator locally (so its log is a
file you can read), trains version 1 of a tiny shapes detector from scratch and version 2 from
`latest` with label corrections, each scored on a pinned holdout against the champion
(spec.promotion), showing the model line (`kubectl get modelline`, the ModelLine the operator
keeps for the line) after each, then `kubectl get retrainjobs`, the decision between them and
an in-cluster `retrainer verify` of both versions. The world is left running; `make world-down`
stops it and the operator (which carries the world's member marker, so `down` finds it).

    python -m retrainer_demo [--epochs 15] [--timeout 420]

The numbers mean something on 2 CPU cores: 128 training images of 64 px, a quarter of them
labelled wrong (the corrections fix them), AdamW with a short warm-up and no mosaic (which
shrinks 64 px shapes to nothing) reach a holdout mAP50-95 around 0.5 in 15 epochs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from retrainer_contract import evidence, tracking
from retrainer_contract import status as vocabulary
from retrainer_world import procs, startup
from retrainer_world import world as worldmod

from retrainer_demo import leftovers, shapes

__all__ = ["main", "retrainjob", "stop_operator"]

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "retrainer-demo"
RELEASE = "retrainer"
MODEL = "shapes"
CLAIM = "retrainer-models"
SECRET = "minio-credentials"
BUCKET = "datasets"
DATASET_PREFIX = "demo/shapes"
CORRECTIONS_PREFIX = "demo/shapes-corrections"
HOLDOUT_PREFIX = "demo/shapes-holdout"
REGISTERED_MODEL = f"{NAMESPACE}-{MODEL}"
# The data: sizes chosen so that v1 scores clearly above zero on the holdout within minutes.
TRAIN, VAL, HOLDOUT, NOISY, SIZE = 128, 16, 32, 32, 64
FAST_ARGS = {"workers": 0, "warmup_epochs": 1, "mosaic": 0.0, "optimizer": "AdamW", "lr0": 0.003}
GROUP, VERSION, PLURAL = "retrainer.dev", "v1alpha1", "retrainjobs"


class DemoError(RuntimeError):
    """A demo step failed; the message says which and where to look."""


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def retrainjob(name: str, base: dict[str, str], epochs: int, corrections: bool) -> dict[str, Any]:
    """The demo's RetrainJob: CPU, tiny images, no dataloader workers (2 cores), and promotion
    on evidence: scored with the champion on the pinned holdout, promoted only if better."""
    spec: dict[str, Any] = {
        "model": MODEL,
        "baseModel": base,
        "dataset": {"uri": f"s3://{BUCKET}/{DATASET_PREFIX}"},
        "training": {"epochs": epochs, "imgsz": SIZE, "batch": 16, "extraArgs": FAST_ARGS},
        "resources": {"gpus": 0, "cpu": "2", "memory": "4Gi"},
        "storage": {"claimName": CLAIM},
        "retry": {"backoffLimit": 1},
        "mlflow": {"registeredModel": REGISTERED_MODEL},
        "promotion": {
            "metric": "mAP50_95",
            "holdout": {"uri": f"s3://{BUCKET}/{HOLDOUT_PREFIX}"},
            "minImprovement": 0.01,
            # A paired bootstrap over the holdout's images: promoted only when the lower
            # bound of the improvement's 95% interval clears the margin.
            "confidence": 0.95,
        },
    }
    if corrections:
        spec["corrections"] = {"uri": f"s3://{BUCKET}/{CORRECTIONS_PREFIX}"}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RetrainJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


def _run(argv: Sequence[str], env: dict[str, str], what: str, input: str | None = None) -> str:
    proc = subprocess.run(
        list(argv), env=env, input=input, capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        raise DemoError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


# ---- cluster set-up -----------------------------------------------------------------------


def _reset_mlflow(w: worldmod.World) -> None:
    """What an earlier demo left in MLflow goes too: its registered model (the champion alias
    would name a version whose files went with the old claim), its runs and the experiment's
    allocated-version tag (so the version sequence starts at 1 again). Only the demo does this:
    the product never deletes MLflow history."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    mlflow = MlflowClient(w.mlflow_uri, registry_uri=w.mlflow_uri)
    with contextlib.suppress(MlflowException):
        mlflow.delete_registered_model(REGISTERED_MODEL)
    experiment = mlflow.get_experiment_by_name(MODEL)
    if experiment is None:
        return
    # The operator's record of the numbers it handed out (recovery evidence) goes too.
    for allocated in tracking.allocated_in(experiment.tags, NAMESPACE, MODEL):
        mlflow.delete_experiment_tag(experiment.experiment_id, allocated)
    runs = mlflow.search_runs(
        [experiment.experiment_id], filter_string=tracking.model_filter(NAMESPACE, MODEL)
    )
    for run in runs:
        mlflow.delete_run(run.info.run_id)
    if runs:
        say(f"removed {len(runs)} MLflow runs and the registered model of the previous demo")


def _install(api: client.ApiClient, w: worldmod.World, env: dict[str, str]) -> None:
    kubectl, helm = str(w.bin_dir / "kubectl"), str(w.bin_dir / "helm")
    crds = [
        REPO / "crds" / "retrainer.dev_retrainjobs.yaml",
        REPO / "crds" / "retrainer.dev_modellines.yaml",
    ]
    files = [arg for crd in crds for arg in ("-f", str(crd))]
    _run([kubectl, "apply", "--server-side", *files], env, "applying the CRDs")
    _run(
        [
            kubectl,
            "wait",
            "--for=condition=Established",
            "crd/retrainjobs.retrainer.dev",
            "crd/modellines.retrainer.dev",
        ],
        env,
        "waiting for the CRDs",
    )
    say(f"helm install {RELEASE} charts/retrainer -n {NAMESPACE} (storage.create=true)")
    values = {
        "watchNamespaces": [NAMESPACE],
        "storage": {"create": True, "claimName": CLAIM, "size": "1Gi"},
        "mlflow": {"trackingUri": w.mlflow_uri},
        "s3": {"endpoint": w.minio_endpoint, "secretName": SECRET},
        "progressInterval": 2,
    }
    _run(
        [
            helm,
            "upgrade",
            "--install",
            RELEASE,
            str(REPO / "charts" / "retrainer"),
            "-n",
            NAMESPACE,
            "--create-namespace",
            "-f",
            "-",
        ],
        env,
        "helm install",
        input=json.dumps(values),
    )
    # The operator runs locally (below), so the chart's Deployment must not run a second one.
    _run(
        [
            kubectl,
            "scale",
            "deployment",
            "-n",
            NAMESPACE,
            "--replicas=0",
            "-l",
            f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator",
        ],
        env,
        "scaling the chart's operator Deployment to 0",
    )
    core = client.CoreV1Api(api)
    _wait_no_operator_pods(core)
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name=SECRET),
        string_data={"accessKey": w.minio_access_key, "secretKey": w.minio_secret_key},
    )
    try:
        core.create_namespaced_secret(NAMESPACE, secret)
    except ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_secret(SECRET, NAMESPACE, secret)


def _wait_no_operator_pods(core: client.CoreV1Api) -> None:
    # The pod runner maps the operator image to `retrainer-operator`, so the Deployment's pod
    # would really run; it must be gone before the local operator starts.
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator"
    deadline = time.monotonic() + 60
    while core.list_namespaced_pod(NAMESPACE, label_selector=selector).items:
        if time.monotonic() > deadline:
            raise DemoError(f"the chart's operator pod in {NAMESPACE} did not stop within 60s")
        time.sleep(0.5)


# ---- the local operator -------------------------------------------------------------------


def _record(w: worldmod.World) -> Path:
    return w.state / "demo-operator.json"


def stop_operator(state: Path | str | None = None) -> None:
    """Stop a demo operator recorded in the state folder (also done by `world down`)."""
    record = worldmod.state_path(state) / "demo-operator.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        data = json.loads(record.read_text())
        procs.stop_all([procs.Proc.from_json("operator", data["proc"])])
    record.unlink(missing_ok=True)


def _start_operator(api: client.ApiClient, w: worldmod.World, env: dict[str, str]) -> Path:
    stop_operator(w.state)
    core = client.CoreV1Api(api)
    maps = core.list_namespaced_config_map(
        NAMESPACE, label_selector=f"app.kubernetes.io/instance={RELEASE}"
    ).items
    settings = next((m.data for m in maps if "RETRAINER_TRAINER_IMAGE" in (m.data or {})), None)
    if not settings:
        raise DemoError(f"the chart's operator ConfigMap is missing in {NAMESPACE}")
    metrics, health = procs.free_ports(2)
    op_env = {
        **env,
        **settings,
        "RETRAINER_METRICS_PORT": str(metrics),
        "RETRAINER_HEALTH_PORT": str(health),
        # `world down` kills every process carrying this marker: the operator included.
        startup.MARKER: str(w.state),
    }
    log = w.layout.log("demo-operator")
    binary = str(Path(sys.executable).parent / "retrainer-operator")
    proc = procs.spawn("operator", [binary], log, env=op_env, cwd=w.state)
    _record(w).write_text(json.dumps({"proc": proc.to_json(), "healthPort": health}))
    url = f"http://127.0.0.1:{health}/healthz"

    def healthy() -> bool:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
        return False

    try:
        procs.wait_ready(proc, log, healthy, timeout=60)
    except procs.ComponentError as exc:
        raise DemoError(str(exc)) from None
    say(f"operator running locally (pid {proc.pid}, log {log})")
    return log


# ---- data and training --------------------------------------------------------------------


def _upload_data(w: worldmod.World) -> None:
    with tempfile.TemporaryDirectory(prefix="retrainer-demo-") as tmp:
        root = Path(tmp)
        data = shapes.generate_dataset(
            root / "shapes", seed=0, train=TRAIN, val=VAL, size=SIZE, noisy=NOISY
        )
        fixes = shapes.write_corrections(root / "corrections", seed=0, size=SIZE, noisy=NOISY)
        pinned = shapes.generate_holdout(root / "holdout", seed=0, count=HOLDOUT, size=SIZE)
        minio = w.minio_client()
        n = len(shapes.upload_folder(minio, BUCKET, DATASET_PREFIX, data))
        m = len(shapes.upload_folder(minio, BUCKET, CORRECTIONS_PREFIX, fixes))
        h = len(shapes.upload_folder(minio, BUCKET, HOLDOUT_PREFIX, pinned))
    say(
        f"uploaded {n} dataset files to s3://{BUCKET}/{DATASET_PREFIX} ({NOISY} of {TRAIN} "
        f"training labels wrong), {m} corrections, {h} holdout files (s3://{BUCKET}/"
        f"{HOLDOUT_PREFIX})"
    )


def _decision(obj: dict[str, Any]) -> None:
    """Print a version's holdout evaluation: the decision and both versions' numbers."""
    status = obj.get("status") or {}
    evaluation = status.get("evaluation") or {}
    metric = evaluation.get("metric", "")
    ours = (evaluation.get("challenger") or {}).get("metrics") or {}
    line = f"v{status.get('version')} on the holdout: {metric} {ours.get(metric, 0):.3f}"
    champion = evaluation.get("champion")
    if champion:
        theirs = (champion.get("metrics") or {}).get(metric, 0)
        line += f" vs champion v{champion.get('version')} {theirs:.3f}"
    promoted = vocabulary.get_condition(status, vocabulary.PROMOTED) or {}
    say(f"{line} -> {evaluation.get('decision')}: {promoted.get('message', '')}")
    interval = evidence.interval_line(evaluation)
    if interval:
        say(f"v{status.get('version')}: {interval}")


def _wait(api: client.ApiClient, name: str, timeout: float, op_log: Path) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    deadline, shown, start = time.monotonic() + timeout, "", time.monotonic()
    while time.monotonic() < deadline:
        obj: Any = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        status = obj.get("status") or {}
        phase = status.get("phase") or vocabulary.PENDING
        line = f"{name}: phase={phase}"
        if status.get("version"):
            line += f" version={status['version']}"
        if (status.get("progress") or {}).get("text"):
            line += f" epoch={status['progress']['text']}"
        if line != shown:
            say(f"[{int(time.monotonic() - start):3d}s] {line}")
            shown = line
        if phase in vocabulary.TERMINAL_PHASES:
            return dict(obj)
        time.sleep(1)
    raise DemoError(f"{name} did not finish within {timeout:.0f}s; operator log: {op_log}")


def _train(
    api: client.ApiClient, manifest: dict[str, Any], timeout: float, op_log: Path
) -> dict[str, Any]:
    name = manifest["metadata"]["name"]
    say(f"applying RetrainJob {name} (baseModel {manifest['spec']['baseModel']})")
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, manifest
    )
    obj = _wait(api, name, timeout, op_log)
    status = obj.get("status") or {}
    verified = vocabulary.is_true(status, vocabulary.VERIFIED)
    if status.get("phase") != vocabulary.SUCCEEDED or not verified:
        failed = vocabulary.get_condition(status, vocabulary.FAILED)
        why = failed.get("message", "") if failed else "not verified"
        raise DemoError(
            f"{name} ended {status.get('phase')}: {why} "
            f"(retrainer describe {name} -n {NAMESPACE}; operator log {op_log})"
        )
    return obj


def run(epochs: int, timeout: float) -> None:
    """Every step of the demo; raises DemoError naming the step that failed."""
    say("starting the local world (reused when already up)")
    w = worldmod.start(owner="cli")
    env = {**os.environ, **w.env()}
    api = config.new_client_from_config(config_file=str(w.kubeconfig))
    # The previous demo's operator goes first: the namespace it watched goes next.
    stop_operator(w.state)
    leftovers.reset(api, w, env, NAMESPACE, RELEASE, say)
    _reset_mlflow(w)
    _install(api, w, env)
    op_log = _start_operator(api, w, env)
    _upload_data(w)
    kubectl = str(w.bin_dir / "kubectl")
    line = [kubectl, "get", "modelline", MODEL, "-n", NAMESPACE, "-o", "wide"]
    first = _train(
        api,
        retrainjob(f"{MODEL}-initial", {"architecture": "yolo11n.yaml"}, epochs, False),
        timeout,
        op_log,
    )
    say(f"the model line after version {first['status']['version']}:")
    print(_run(line, env, "kubectl get modelline"))
    second = _train(
        api,
        retrainjob(f"{MODEL}-corrected", {"version": "latest"}, epochs, True),
        timeout,
        op_log,
    )
    say(f"the model line after version {second['status']['version']}:")
    print(_run(line, env, "kubectl get modelline"))
    print(_run([kubectl, "get", "retrainjobs", "-n", NAMESPACE, "-o", "wide"], env, "kubectl get"))
    for obj in (first, second):
        _decision(obj)
    retrainer = str(Path(sys.executable).parent / "retrainer")
    for obj in (first, second):
        version = str(obj["status"]["version"])
        say(f"retrainer verify {MODEL} {version} --in-cluster -n {NAMESPACE}")
        print(
            _run(
                [
                    retrainer,
                    "verify",
                    MODEL,
                    version,
                    "--in-cluster",
                    "-n",
                    NAMESPACE,
                    "--claim",
                    CLAIM,
                    "--s3-endpoint",
                    w.minio_endpoint,
                    "--timeout",
                    "120",
                ],
                env,
                f"retrainer verify of version {version}",
            )
        )
    recorded = second["status"].get("mlflow") or {}
    runs = tracking.experiment_url(w.mlflow_uri, str(recorded.get("experimentId") or ""))
    run_url = recorded.get("runUrl") or w.mlflow_uri
    # Links into the model-training view (MLflow 3 opens a bare address in its GenAI view).
    say(f"MLflow UI: {w.mlflow_uri} (the line's runs: {runs or w.mlflow_uri}; v2's run: {run_url})")
    say(f"done. Try: eval $({sys.executable} -m retrainer_world env)")
    say(f"      retrainer versions -n {NAMESPACE}")
    say(f"      retrainer describe {MODEL}-corrected -n {NAMESPACE}")
    say("the world keeps running; stop it (and the operator) with: make world-down")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="retrainer_demo", description=__doc__)
    parser.add_argument("--epochs", type=int, default=15, help="epochs per version")
    parser.add_argument(
        "--timeout", type=float, default=420, help="seconds each RetrainJob may take"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        run(args.epochs, args.timeout)
    except (
        DemoError,
        leftovers.LeftoverError,
        worldmod.WorldError,
        procs.ComponentError,
        ApiException,
    ) as exc:
        print(f"demo: FAILED: {exc}", file=sys.stderr)
        return 1
    say(f"finished in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
