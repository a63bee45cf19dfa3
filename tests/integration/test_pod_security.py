"""The pod runner's container mode enforces what a real node enforces: securityContext, the
fsGroup ownership of volumes, a read-only root filesystem, dropped capabilities, limits.

These pods run from the operator image (it has a shell and Python, and a non-root USER), in a
namespace that enforces the restricted Pod Security Standard. A pod without fsGroup cannot write
a claim whose root is owned by root; the product's pods set fsGroup and can.
"""

from __future__ import annotations

from typing import Any

import pytest
from container_support import ENFORCE_LABEL, container_namespace, image, pod_log
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from operator_support import wait_for

pytestmark = pytest.mark.integration

WRITE = "echo hi > /claim/x && ls -ln /claim/x"
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}


def _claim(kube: Any, namespace: str) -> None:
    client.CoreV1Api(kube).create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "claim"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )


def _pod(name: str, script: str, fs_group: int | None, **container: Any) -> dict[str, Any]:
    pod_security: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if fs_group is not None:
        pod_security["fsGroup"] = fs_group
    return {
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": pod_security,
            "containers": [
                {
                    "name": "main",
                    "image": image("operator"),
                    "command": ["sh", "-c", script],
                    "securityContext": RESTRICTED_CONTAINER,
                    "volumeMounts": [{"name": "claim", "mountPath": "/claim"}],
                    **container,
                }
            ],
            "volumes": [{"name": "claim", "persistentVolumeClaim": {"claimName": "claim"}}],
        },
    }


def _finished(kube: Any, namespace: str, name: str) -> Any:
    def probe() -> Any:
        pod = client.CoreV1Api(kube).read_namespaced_pod(name, namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    return wait_for(f"pod {name} to finish", probe, timeout=120)


def test_a_non_root_pod_without_fs_group_cannot_write_a_root_owned_claim(
    world: Any, kube: Any, namespace: str
) -> None:
    container_namespace(kube, namespace)
    _claim(kube, namespace)
    core = client.CoreV1Api(kube)
    core.create_namespaced_pod(namespace, _pod("no-fsgroup", WRITE, fs_group=None))
    pod = _finished(kube, namespace, "no-fsgroup")

    assert pod.status.phase == "Failed"
    assert "Permission denied" in pod_log(world, namespace, "no-fsgroup", "main")

    core.create_namespaced_pod(namespace, _pod("with-fsgroup", WRITE, fs_group=10001))
    pod = _finished(kube, namespace, "with-fsgroup")

    assert pod.status.phase == "Succeeded", pod_log(world, namespace, "with-fsgroup", "main")
    # Owned by the container's user, in the fsGroup (setgid on the claim's root).
    assert " 10001 10001 " in pod_log(world, namespace, "with-fsgroup", "main")


def test_a_container_runs_as_its_user_with_a_read_only_root_no_capabilities_and_its_limits(
    world: Any, kube: Any, namespace: str
) -> None:
    container_namespace(kube, namespace)
    _claim(kube, namespace)
    script = (
        "id -u; id -G; grep CapEff /proc/self/status;"
        " cat /sys/fs/cgroup/memory/memory.limit_in_bytes;"
        " touch /root-file 2>&1; echo $MESSAGE > /dev/termination-log"
    )
    body = _pod(
        "limits",
        script,
        fs_group=10001,
        env=[{"name": "MESSAGE", "value": "from-env"}],
        resources={"limits": {"memory": "256Mi", "cpu": "500m"}},
    )
    client.CoreV1Api(kube).create_namespaced_pod(namespace, body)
    pod = _finished(kube, namespace, "limits")
    log = pod_log(world, namespace, "limits", "main")

    assert pod.status.phase == "Succeeded", log
    lines = log.splitlines()
    assert lines[0] == "10001"
    assert "10001" in lines[1].split()
    assert lines[2].split()[-1] == "0000000000000000"  # every capability dropped
    assert lines[3] == str(256 * 2**20)
    assert "Read-only file system" in log
    assert pod.status.container_statuses[0].state.terminated.message == "from-env\n"


def test_the_restricted_standard_rejects_a_root_pod_and_run_as_non_root_stops_one(
    kube: Any, namespace: str
) -> None:
    container_namespace(kube, namespace)
    core = client.CoreV1Api(kube)
    as_root = _pod("as-root", "true", fs_group=None, volumeMounts=[])
    as_root["spec"]["volumes"] = []
    as_root["spec"]["securityContext"]["runAsUser"] = 0
    with pytest.raises(ApiException) as rejected:
        core.create_namespaced_pod(namespace, as_root)
    assert rejected.value.status == 403
    assert "restricted" in str(rejected.value.body)

    # Without the admission policy, the kubelet's own runAsNonRoot check refuses to start it.
    container_namespace(kube, namespace, restricted=False)
    core.patch_namespace(namespace, {"metadata": {"labels": {ENFORCE_LABEL: None}}})

    def admitted() -> bool:
        # Pod Security admission reads namespaces from its informer cache: until it sees the
        # label gone, it still refuses (403, retried by wait_for).
        core.create_namespaced_pod(namespace, as_root)
        return True

    wait_for("the pod admitted once the namespace enforces nothing", admitted, timeout=30)

    def refused() -> Any:
        statuses = core.read_namespaced_pod("as-root", namespace).status.container_statuses
        waiting = statuses[0].state.waiting if statuses else None
        return waiting if waiting and waiting.reason == "CreateContainerConfigError" else None

    waiting = wait_for("the container to be refused", refused, timeout=60)
    assert "non-root" in waiting.message


def test_an_empty_dir_over_its_size_limit_gets_the_pod_evicted(
    world: Any, kube: Any, namespace: str
) -> None:
    container_namespace(kube, namespace)
    _claim(kube, namespace)
    body = _pod(
        "fills-scratch",
        "head -c 4194304 /dev/zero > /scratch/fill && sleep 60",
        fs_group=10001,
        volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
    )
    body["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}]
    client.CoreV1Api(kube).create_namespaced_pod(namespace, body)
    pod = _finished(kube, namespace, "fills-scratch")

    assert (pod.status.phase, pod.status.reason) == ("Failed", "Evicted")
    assert 'EmptyDir volume "scratch" exceeds the limit "1Mi"' in pod.status.message


def test_a_deadline_stops_the_container_with_sigterm_before_sigkill(
    world: Any, kube: Any, namespace: str
) -> None:
    container_namespace(kube, namespace)
    _claim(kube, namespace)
    script = "trap 'echo stopped > /dev/termination-log; exit 143' TERM; sleep 60 & wait"
    body = _pod("graceful", script, fs_group=10001)
    body["spec"]["activeDeadlineSeconds"] = 3
    body["spec"]["terminationGracePeriodSeconds"] = 20
    client.CoreV1Api(kube).create_namespaced_pod(namespace, body)
    pod = _finished(kube, namespace, "graceful")

    assert pod.status.reason == "DeadlineExceeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.message) == (143, "stopped\n")
