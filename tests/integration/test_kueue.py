"""With a real Kueue controller, a ClusterQueue with quota for one GPU admits one training Job
at a time: the second RetrainJob waits (`JobSuspended`) and runs when the first ends.

Kueue (sigs.k8s.io/kueue, built by tools/build-kueue.sh) runs for this module only, as a
container on the host network (its static binary mounted into the operator image), against
the world's apiserver, with its CRDs and the batch/job integration; its webhooks are not
registered (the operator creates the Jobs suspended and labelled itself). The world's node
advertises GPUs but the machine has none, so an admitted trainer fails at once (Ultralytics:
invalid CUDA device) and the first RetrainJob ends Failed, which frees the quota; the Job's
activeDeadlineSeconds is the backstop.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from container_support import container_engine_env, image
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from operator_support import (
    condition,
    create,
    free_port,
    get,
    jobs_of,
    operator_in_prepared_namespace,
    retrainjob,
    upload_dataset,
    wait_for,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"


def _kueue_dir() -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "tools" / "build-kueue.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    assert out.returncode == 0, f"tools/build-kueue.sh failed: {out.stderr[-2000:]}"
    return Path(out.stdout.strip().splitlines()[-1])


def _self_signed(folder: Path) -> None:
    """Kueue's webhook server wants a certificate even when no webhook is registered."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kueue-webhook")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture(scope="module")
def kueue(world: Any, kubectl: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    folder = _kueue_dir()
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(folder / "crds"))
    # Kueue maps its kinds once at start: its CRDs must be served before it runs.
    kubectl("wait", "--for=condition=Established", "--timeout=120s", "-f", str(folder / "crds"))
    kubectl("create", "namespace", "kueue-system", check=False)
    work = tmp_path_factory.mktemp("kueue")
    _self_signed(work / "certs")
    health = free_port()
    config = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": "kueue-system",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"port": free_port(), "host": "127.0.0.1", "certDir": "/work/certs"},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": ["batch/job"]},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    (work / "kubeconfig").write_text(Path(world.kubeconfig).read_text())
    # Kueue reads its metrics certificate from the fixed /etc/kueue/metrics/certs when it does
    # not manage certificates itself: it runs as a container (its static binary mounted into
    # the operator image, host network) so that path can be a mount.
    name = f"retrainer-kueue-{os.getpid()}"
    engine = container_engine_env()
    log = (work / "kueue.log").open("wb")
    argv = [
        "podman", "run", "--rm", "--name", name, "--network", "host", "--pull", "never",
        "--user", "0", "--label", "dev.retrainer.kueue=1",
        "--volume", f"{folder / 'kueue'}:/kueue:ro",
        "--volume", f"{work}:/work:ro",
        "--volume", f"{work / 'certs'}:/etc/kueue/metrics/certs:ro",
        "--env", "KUBECONFIG=/work/kubeconfig",
        "--entrypoint", "/kueue",
        image("operator"), "--config=/work/config.yaml",
        "--feature-gates=VisibilityOnDemand=false",  # its API server wants in-cluster auth
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **engine},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while subprocess.run(
            ["curl", "-sf", f"http://127.0.0.1:{health}/readyz"], capture_output=True, check=False
        ).returncode:
            assert proc.poll() is None, (work / "kueue.log").read_text()[-4000:]
            assert time.monotonic() < deadline, (work / "kueue.log").read_text()[-4000:]
            time.sleep(1)
        yield
    finally:
        subprocess.run(
            ["podman", "rm", "--force", "--time", "5", name],
            env={**os.environ, **engine},
            capture_output=True,
            check=False,
            timeout=60,
        )
        proc.wait(timeout=30)
        log.close()


@pytest.fixture
def queues(kube: Any, namespace: str) -> Iterator[None]:
    """A ResourceFlavor and a one-GPU ClusterQueue (cluster-wide: removed afterwards) and
    the LocalQueue `gpus` in the test namespace."""
    _queues(kube, namespace)
    yield
    objects = client.CustomObjectsApi(kube)
    for plural, name in (("clusterqueues", "gpus"), ("resourceflavors", "flavor")):
        with contextlib.suppress(ApiException):
            objects.delete_cluster_custom_object(GROUP, VERSION, plural, f"{namespace}-{name}")
        # Kueue's in-use finalizer would outlive the controller, which stops with the module.
        with contextlib.suppress(ApiException):
            objects.patch_cluster_custom_object(
                GROUP, VERSION, plural, f"{namespace}-{name}", {"metadata": {"finalizers": None}}
            )


def _queues(kube: Any, namespace: str) -> None:
    objects = client.CustomObjectsApi(kube)
    flavor = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ResourceFlavor"}
    cluster_queue = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ClusterQueue",
        "metadata": {"name": f"{namespace}-gpus"},
        "spec": {
            "namespaceSelector": {},
            "resourceGroups": [
                {
                    "coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
                    "flavors": [
                        {
                            "name": f"{namespace}-flavor",
                            "resources": [
                                {"name": "cpu", "nominalQuota": "64"},
                                {"name": "memory", "nominalQuota": "256Gi"},
                                {"name": "nvidia.com/gpu", "nominalQuota": "1"},
                            ],
                        }
                    ],
                }
            ],
        },
    }
    local_queue = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LocalQueue",
        "metadata": {"name": "gpus"},
        "spec": {"clusterQueue": f"{namespace}-gpus"},
    }
    objects.create_cluster_custom_object(
        GROUP, VERSION, "resourceflavors", {**flavor, "metadata": {"name": f"{namespace}-flavor"}}
    )
    objects.create_cluster_custom_object(GROUP, VERSION, "clusterqueues", cluster_queue)
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "localqueues", local_queue)


def _suspended(kube: Any, namespace: str, name: str) -> bool | None:
    jobs = jobs_of(kube, namespace, name)
    return bool(jobs[0].spec.suspend) if jobs else None


def test_a_one_gpu_cluster_queue_runs_the_second_retrainjob_when_the_first_ends(
    crd: object,  # run alone on a fresh world, no other module has applied it
    kueue: None,
    queues: None,
    world: Any,
    kube: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    dataset = upload_dataset(world, tmp_path, f"{namespace}/shapes", train=4, val=2)
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        for name in ("first", "second"):
            body = retrainjob(name, dataset)
            body["spec"]["resources"] = {"gpus": 1, "cpu": "1", "memory": "1Gi"}
            body["spec"]["scheduling"] = {"queueName": "gpus"}
            body["spec"]["retry"] = {"activeDeadlineSeconds": 60, "backoffLimit": 0}
            create(kube, namespace, body)
            if name == "first":
                wait_for(
                    "Kueue to admit the first Job",
                    lambda: _suspended(kube, namespace, "first") is False,
                    timeout=60,
                    operator=operator,
                )

        def second_waits() -> bool:
            running = condition(get(kube, namespace, "second"), "Running")
            return running.get("reason") == "JobSuspended"

        wait_for("the second to wait in the queue", second_waits, 60, operator)
        assert _suspended(kube, namespace, "second") is True
        assert _suspended(kube, namespace, "first") is False

        def first_ended() -> bool:
            return (get(kube, namespace, "first").get("status") or {}).get("phase") == "Failed"

        wait_for("the first to end", first_ended, 150, operator)
        wait_for(
            "Kueue to admit the second Job",
            lambda: _suspended(kube, namespace, "second") is False,
            timeout=60,
            operator=operator,
        )
