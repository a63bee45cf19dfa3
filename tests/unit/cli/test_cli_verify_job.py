"""The in-cluster verify Job: read-only claim, credentials only by secretKeyRef, never retried."""

from __future__ import annotations

from typing import Any

from retrainer_cli import verify_job


def _job(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": "retrainer-verify-shapes-abc123",
        "namespace": "team-a",
        "model": "shapes",
        "version": 2,
        "claim": "retrainer-models",
        "image": "ghcr.io/retrainer/operator:0.1.0",
        "s3_endpoint": "http://minio:9000",
        "s3_secret": "minio-credentials",
        "no_remote": False,
    }
    return verify_job.build_verify_job(**{**args, **overrides})


def test_verify_job_mounts_the_claim_read_only_and_runs_retrainer_verify() -> None:
    job = _job()
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert job["spec"]["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
    assert container["command"] == ["retrainer"]
    assert container["args"] == ["verify", "shapes", "2", "--root", "/data"]
    assert container["volumeMounts"] == [{"name": "models", "mountPath": "/data", "readOnly": True}]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {
        "claimName": "retrainer-models",
        "readOnly": True,
    }
    assert pod["automountServiceAccountToken"] is False


def test_verify_job_takes_credentials_from_the_secret_never_as_values() -> None:
    env = {e["name"]: e for e in _job()["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://minio:9000"
    for name, key in (("AWS_ACCESS_KEY_ID", "accessKey"), ("AWS_SECRET_ACCESS_KEY", "secretKey")):
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "minio-credentials", "key": key}


def test_no_remote_verify_job_has_no_credentials_and_latest_passes_no_version() -> None:
    container = _job(no_remote=True, version=None)["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["verify", "shapes", "--root", "/data", "--no-remote"]
    assert [e["name"] for e in container["env"]] == ["RETRAINER_TERMINATION_MESSAGE_PATH"]


def test_job_result_waits_for_a_true_terminal_condition() -> None:
    assert verify_job.job_result({"status": {}}) is None
    running = {"status": {"conditions": [{"type": "Failed", "status": "False"}]}}
    assert verify_job.job_result(running) is None
    done = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert verify_job.job_result(done) == "Complete"
