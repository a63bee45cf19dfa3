"""Jobs run end to end in the local world: real Job controller and scheduler, the pod runner
as the node. These are the behaviours the operator relies on (exit codes, backoff, pod
failure policy, eviction, claims that outlive pods).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

WAIT_SECONDS = 180
Obj = dict[str, Any]


def job_manifest(name: str, script: str, *, backoff_limit: int = 0, **pod_spec: Any) -> Obj:
    """A Job with one container `main` running `python -c script`."""
    container: Obj = {
        "name": "main",
        "image": "python:3.11",
        "command": ["python", "-c", script],
        "volumeMounts": pod_spec.pop("volumeMounts", []),
    }
    spec: Obj = {
        "backoffLimit": backoff_limit,
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 5,
                "containers": [container],
                **pod_spec,
            }
        },
    }
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def apply(kubectl: Callable[..., Any], namespace: str, manifest: Obj) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def get(kubectl: Callable[..., Any], namespace: str, *what: str) -> Obj:
    out = kubectl("get", "-n", namespace, *what, "-o", "json")
    return dict(json.loads(out.stdout))


def wait_for(check: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll `check` until it returns something truthy (a limit on waiting, not an assertion
    about speed)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)


def job_condition(kubectl: Callable[..., Any], namespace: str, name: str) -> Obj | None:
    """The Job's Complete or Failed condition once it has one."""
    job = get(kubectl, namespace, "job", name)
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond["type"] in ("Complete", "Failed") and cond["status"] == "True":
            return {"type": cond["type"], "reason": cond.get("reason"), "job": job}
    return None


def job_pods(kubectl: Callable[..., Any], namespace: str, name: str) -> list[Obj]:
    pods = get(kubectl, namespace, "pods", "-l", f"batch.kubernetes.io/job-name={name}")
    return list(pods["items"])


def finished(kubectl: Callable[..., Any], namespace: str, name: str) -> Obj:
    return dict(
        wait_for(lambda: job_condition(kubectl, namespace, name), f"job {namespace}/{name}")
    )


def terminated(pod: Obj) -> Obj:
    return dict(pod["status"]["containerStatuses"][0]["state"]["terminated"])


def test_job_printing_hi_completes_with_output_in_log_and_message(
    world: Any, namespace: str, kubectl: Callable[..., Any]
) -> None:
    script = "print('hi'); open('/dev/termination-log', 'w').write('said hi')"
    apply(kubectl, namespace, job_manifest("hello", script))

    result = finished(kubectl, namespace, "hello")

    assert result["type"] == "Complete"
    (pod,) = job_pods(kubectl, namespace, "hello")
    assert pod["status"]["phase"] == "Succeeded"
    assert terminated(pod)["exitCode"] == 0
    assert terminated(pod)["message"] == "said hi"
    log = Path(world.state) / "logs" / "pods" / f"{namespace}_{pod['metadata']['name']}_main.log"
    assert log.read_text() == "hi\n"


def test_job_exiting_1_with_backoff_limit_1_fails_after_two_pods(
    world: Any, namespace: str, kubectl: Callable[..., Any]
) -> None:
    apply(kubectl, namespace, job_manifest("crash", "raise SystemExit(1)", backoff_limit=1))

    result = finished(kubectl, namespace, "crash")

    assert (result["type"], result["reason"]) == ("Failed", "BackoffLimitExceeded")
    assert result["job"]["status"]["failed"] == 2
    pods = job_pods(kubectl, namespace, "crash")
    assert [terminated(p)["exitCode"] for p in pods] == [1, 1]


def test_pod_failure_policy_fails_the_job_at_once_on_exit_code_3(
    world: Any, namespace: str, kubectl: Callable[..., Any]
) -> None:
    manifest = job_manifest("bad-input", "raise SystemExit(3)", backoff_limit=6)
    manifest["spec"]["podFailurePolicy"] = {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "main", "operator": "In", "values": [3]},
            }
        ]
    }
    apply(kubectl, namespace, manifest)

    result = finished(kubectl, namespace, "bad-input")

    assert (result["type"], result["reason"]) == ("Failed", "PodFailurePolicy")
    pods = job_pods(kubectl, namespace, "bad-input")
    assert len(pods) == 1 and terminated(pods[0])["exitCode"] == 3


def test_evicted_pod_under_an_ignore_rule_is_not_counted_and_the_job_completes(
    world: Any, namespace: str, kubectl: Callable[..., Any], tmp_path: Path
) -> None:
    # The first pod marks a host folder and sleeps until evicted; its replacement sees the
    # mark and succeeds. backoffLimit 0: had the eviction counted, the Job would fail.
    script = (
        "import pathlib, time\n"
        "mark = pathlib.Path('/marks/first-run')\n"
        "if mark.exists():\n"
        "    print('second run'); raise SystemExit(0)\n"
        "mark.touch(); time.sleep(600)\n"
    )
    manifest = job_manifest(
        "evictable",
        script,
        volumes=[{"name": "marks", "hostPath": {"path": str(tmp_path)}}],
        volumeMounts=[{"name": "marks", "mountPath": "/marks"}],
    )
    manifest["spec"]["podFailurePolicy"] = {
        "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
    }
    apply(kubectl, namespace, manifest)
    wait_for(lambda: (tmp_path / "first-run").exists(), "the first pod to start")
    (first,) = job_pods(kubectl, namespace, "evictable")
    pod_name = first["metadata"]["name"]
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod_name, "namespace": namespace},
    }
    kubectl(
        "create",
        "--raw",
        f"/api/v1/namespaces/{namespace}/pods/{pod_name}/eviction",
        "-f",
        "-",
        input=json.dumps(eviction),
    )

    result = finished(kubectl, namespace, "evictable")

    assert result["type"] == "Complete"
    assert result["job"]["status"].get("failed", 0) == 0
    assert result["job"]["status"]["succeeded"] == 1
    names = [p["metadata"]["name"] for p in job_pods(kubectl, namespace, "evictable")]
    assert pod_name not in names


def test_a_file_written_to_a_claim_by_one_job_is_read_by_the_next(
    world: Any, namespace: str, kubectl: Callable[..., Any]
) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "models"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    apply(kubectl, namespace, claim)
    mount: Obj = {
        "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}],
        "volumeMounts": [{"name": "models", "mountPath": "/var/lib/retrainer"}],
    }
    write = "open('/var/lib/retrainer/hello.txt', 'w').write('from the first job')"
    apply(kubectl, namespace, job_manifest("writer", write, **dict(mount)))
    assert finished(kubectl, namespace, "writer")["type"] == "Complete"

    read = (
        "text = open('/var/lib/retrainer/hello.txt').read()\n"
        "open('/dev/termination-log', 'w').write(text)\n"
    )
    apply(kubectl, namespace, job_manifest("reader", read, **dict(mount)))

    assert finished(kubectl, namespace, "reader")["type"] == "Complete"
    (pod,) = job_pods(kubectl, namespace, "reader")
    assert terminated(pod)["message"] == "from the first job"
    pvc = get(kubectl, namespace, "pvc", "models")
    assert pvc["status"]["phase"] == "Bound"


def test_credentials_reach_the_process_only_through_the_pod_spec(
    world: Any, namespace: str, kubectl: Callable[..., Any]
) -> None:
    # Only AWS_ACCESS_KEY_ID is in the spec: nothing else of the runner's env may leak in.
    script = (
        "import os\n"
        "aws = sorted(k for k in os.environ if k.startswith('AWS_'))\n"
        "open(os.environ['MESSAGE'], 'w').write(os.environ['AWS_ACCESS_KEY_ID'] + ' ' + str(aws))\n"
    )
    manifest = job_manifest("creds", script)
    manifest["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {
            "name": "AWS_ACCESS_KEY_ID",
            "valueFrom": {"secretKeyRef": {"name": "minio-credentials", "key": "accessKey"}},
        },
        {"name": "MESSAGE", "value": "/dev/termination-log"},
    ]
    apply(kubectl, namespace, manifest)

    assert finished(kubectl, namespace, "creds")["type"] == "Complete"
    (pod,) = job_pods(kubectl, namespace, "creds")
    assert terminated(pod)["message"] == f"{world.minio_access_key} ['AWS_ACCESS_KEY_ID']"


def test_a_pod_whose_image_is_unknown_and_has_no_command_fails_with_err_image_pull(
    world: Any, namespace: str, kubectl: Callable[..., Any]
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "no-image"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "example.com/not-in-images-yaml:1"}],
        },
    }
    apply(kubectl, namespace, pod)

    def failed() -> Obj | None:
        current = get(kubectl, namespace, "pod", "no-image")
        return current if current["status"].get("phase") == "Failed" else None

    status = wait_for(failed, "the pod to fail")["status"]
    assert status["reason"] == "ErrImagePull"
    waiting = status["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ErrImagePull" and "images.yaml" in waiting["message"]
