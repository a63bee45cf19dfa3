"""The training Job manifest follows the contract: names, labels, env, volumes, policies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from retrainer_contract import exits
from retrainer_contract.api import job_name
from retrainer_operator.builders import ImageNotAllowed, build_job_spec
from retrainer_operator.config import OperatorConfig

CONFIG = OperatorConfig.from_env(
    {
        "RETRAINER_MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "RETRAINER_S3_ENDPOINT": "http://minio:9000",
    }
)


def retrainjob(**spec: Any) -> dict[str, Any]:
    base_spec: dict[str, Any] = {
        "model": "shapes",
        "baseModel": {"architecture": "yolo11n.yaml"},
        "dataset": {"uri": "datasets/shapes"},
        "training": {"epochs": 2, "imgsz": 64},
        "resources": {"gpus": 0, "cpu": "1", "memory": "4Gi"},
        "retry": {"backoffLimit": 2},
        "storage": {},
        "mlflow": {},
    }
    base_spec.update(spec)
    return {
        "apiVersion": "retrainer.dev/v1alpha1",
        "kind": "RetrainJob",
        "metadata": {"name": "shapes-run", "namespace": "team", "uid": "uid-1", "generation": 1},
        "spec": base_spec,
    }


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_job_is_named_after_model_and_version_and_owned_by_the_retrainjob() -> None:
    job = build_job_spec(retrainjob(), 7, None, CONFIG)
    assert job["metadata"]["name"] == job_name("shapes", 7) == "retrain-shapes-v7"
    assert job["metadata"]["namespace"] == "team"
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "retrainer.dev/v1alpha1",
        "kind": "RetrainJob",
        "name": "shapes-run",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_job_and_pods_carry_the_retrainer_labels() -> None:
    job = build_job_spec(retrainjob(), 3, None, CONFIG)
    expected = {
        "app.kubernetes.io/name": "retrainer-trainer",
        "app.kubernetes.io/managed-by": "retrainer",
        "retrainer.dev/model": "shapes",
        "retrainer.dev/version": "3",
        "retrainer.dev/retrainjob": "shapes-run",
    }
    assert job["metadata"]["labels"] == expected
    assert job["spec"]["template"]["metadata"]["labels"] == expected


def test_env_carries_the_spec_version_and_config_and_secrets_only_by_reference() -> None:
    body = retrainjob()
    env = env_of(build_job_spec(body, 4, None, CONFIG))
    assert json.loads(env["RETRAINER_SPEC"]) == body["spec"]
    assert env["RETRAINER_VERSION"] == "4"
    assert "RETRAINER_BASE_VERSION" not in env
    assert env["RETRAINER_NAME"] == "shapes-run"
    assert env["RETRAINER_NAMESPACE"] == "team"
    assert env["RETRAINER_UID"] == "uid-1"
    assert env["RETRAINER_STORAGE_ROOT"] == "/var/lib/retrainer"
    assert env["RETRAINER_CLAIM_NAME"] == "retrainer-models"
    assert env["RETRAINER_WORKDIR"] == "/tmp/retrainer"
    assert env["RETRAINER_TERMINATION_MESSAGE_PATH"] == "/dev/termination-log"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "minio-credentials", "key": "accessKey"}
    }
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "minio-credentials", "key": "secretKey"}
    }


def test_resolved_base_version_is_passed_to_the_trainer() -> None:
    env = env_of(build_job_spec(retrainjob(baseModel={"version": "latest"}), 2, 1, CONFIG))
    assert env["RETRAINER_BASE_VERSION"] == "1"


def test_the_champion_to_score_against_is_passed_to_the_trainer() -> None:
    env = env_of(build_job_spec(retrainjob(), 5, None, CONFIG, champion_version=3))
    assert env["RETRAINER_CHAMPION_VERSION"] == "3"
    assert "RETRAINER_CHAMPION_VERSION" not in env_of(build_job_spec(retrainjob(), 1, None, CONFIG))


def test_claim_from_spec_is_mounted_at_the_storage_root() -> None:
    job = build_job_spec(retrainjob(storage={"claimName": "team-models"}), 1, None, CONFIG)
    pod = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "team-models"}
    assert "emptyDir" in volumes["workdir"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts == {"models": "/var/lib/retrainer", "workdir": "/tmp/retrainer"}
    assert env_of(job)["RETRAINER_CLAIM_NAME"] == "team-models"


def test_pod_never_restarts_in_place_and_runs_as_the_trainer_service_account() -> None:
    pod = build_job_spec(retrainjob(), 1, None, CONFIG)["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "retrainer-trainer"
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/retrainer/trainer:0.1.0"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert "command" not in container


def test_spec_image_overrides_the_configured_trainer_image() -> None:
    job = build_job_spec(retrainjob(image="ghcr.io/retrainer/trainer:dev"), 1, None, CONFIG)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "ghcr.io/retrainer/trainer:dev"
    )
    config = OperatorConfig.from_env({"RETRAINER_ALLOWED_TRAINER_IMAGES": "registry.local/"})
    job = build_job_spec(retrainjob(image="registry.local/trainer:dev"), 1, None, config)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.local/trainer:dev"
    )


def test_an_image_outside_the_allowlist_never_becomes_a_job() -> None:
    # checks.preflight fails such a RetrainJob first; the builder refuses it even without that.
    with pytest.raises(
        ImageNotAllowed, match=r"registry\.local/trainer:dev.*trainer\.allowedImages"
    ):
        build_job_spec(retrainjob(image="registry.local/trainer:dev"), 1, None, CONFIG)
    with pytest.raises(ImageNotAllowed):
        build_job_spec(retrainjob(image="ghcr.io/retrainer/trainer-evil:1"), 1, None, CONFIG)


def test_evictions_are_ignored_and_exit_code_3_fails_the_job_at_once() -> None:
    rules = build_job_spec(retrainjob(), 1, None, CONFIG)["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert rules[1] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [3]},
    }


def test_a_pod_stopped_by_sigterm_is_a_disruption_not_a_failure() -> None:
    rules = build_job_spec(retrainjob(), 1, None, CONFIG)["spec"]["podFailurePolicy"]["rules"]
    assert rules[2] == {
        "action": "Ignore",
        "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [143]},
    }
    assert exits.PREEMPTED == 143
    # Kubernetes' rules: the first matching rule wins, and `In` never lists exit code 0. The
    # disruption rules cannot shadow bad input: exit 3 is never Ignored.
    codes = [rule["onExitCodes"] for rule in rules if "onExitCodes" in rule]
    assert all(exits.OK not in c["values"] for c in codes)
    first_for = {
        code: next(r["action"] for r in rules if code in r.get("onExitCodes", {}).get("values", []))
        for code in (exits.BAD_INPUT, exits.PREEMPTED)
    }
    assert first_for == {exits.BAD_INPUT: "FailJob", exits.PREEMPTED: "Ignore"}
    assert all(exits.INFRA not in c["values"] for c in codes)  # retried, counted


def test_every_job_has_a_deadline_from_the_spec_or_the_operator() -> None:
    job = build_job_spec(retrainjob(), 1, None, CONFIG)
    assert job["spec"]["activeDeadlineSeconds"] == 86400
    config = OperatorConfig.from_env({"RETRAINER_TRAINER_ACTIVE_DEADLINE_SECONDS": "7200"})
    assert build_job_spec(retrainjob(), 1, None, config)["spec"]["activeDeadlineSeconds"] == 7200
    own = retrainjob(retry={"backoffLimit": 2, "activeDeadlineSeconds": 600})
    assert build_job_spec(own, 1, None, config)["spec"]["activeDeadlineSeconds"] == 600


def test_the_scratch_emptydir_has_the_configured_size_limit() -> None:
    def workdir(config: OperatorConfig) -> dict[str, Any]:
        pod = build_job_spec(retrainjob(), 1, None, config)["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == "workdir"]
        return dict(volume["emptyDir"])

    assert workdir(CONFIG) == {"sizeLimit": "50Gi"}
    config = OperatorConfig.from_env({"RETRAINER_TRAINER_WORKDIR_SIZE_LIMIT": "200Gi"})
    assert workdir(config) == {"sizeLimit": "200Gi"}


def test_the_trainer_is_told_the_dataset_cache_settings() -> None:
    config = OperatorConfig.from_env(
        {"RETRAINER_DATASET_CACHE_MAX_SIZE": "2Ti", "RETRAINER_DATASET_FETCH_CONCURRENCY": "64"}
    )
    pod = build_job_spec(retrainjob(), 1, None, config)["spec"]["template"]["spec"]
    env = {v["name"]: v.get("value") for v in pod["containers"][0]["env"]}
    assert env["RETRAINER_DATASET_CACHE_MAX_SIZE"] == "2Ti"
    assert env["RETRAINER_DATASET_FETCH_CONCURRENCY"] == "64"


def test_cpu_training_requests_and_limits_cpu_and_memory_without_gpus() -> None:
    job = build_job_spec(retrainjob(resources={"cpu": 2, "memory": "1Gi"}), 1, None, CONFIG)
    pod = job["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources == {
        "requests": {"cpu": "2", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }
    assert "tolerations" not in pod


def test_gpus_become_a_limit_and_a_gpu_toleration_before_user_tolerations() -> None:
    user_toleration = {"key": "team", "operator": "Equal", "value": "a", "effect": "NoSchedule"}
    job = build_job_spec(
        retrainjob(
            resources={"gpus": 2, "cpu": "4", "memory": "16Gi"},
            scheduling={
                "tolerations": [user_toleration],
                "nodeSelector": {"gpu": "a100"},
                "priorityClassName": "training",
            },
        ),
        1,
        None,
        CONFIG,
    )
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["requests"]
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        user_toleration,
    ]
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["priorityClassName"] == "training"


def test_queue_name_labels_the_job_for_kueue_and_starts_it_suspended() -> None:
    job = build_job_spec(retrainjob(scheduling={"queueName": "team-gpu"}), 1, None, CONFIG)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpu"
    assert job["spec"]["suspend"] is True
    plain = build_job_spec(retrainjob(), 1, None, CONFIG)
    assert "suspend" not in plain["spec"]
    assert "kueue.x-k8s.io/queue-name" not in plain["metadata"]["labels"]


def test_retry_limits_and_ttl_are_copied_to_the_job() -> None:
    job = build_job_spec(
        retrainjob(
            retry={"backoffLimit": 5, "activeDeadlineSeconds": 3600}, ttlSecondsAfterFinished=0
        ),
        1,
        None,
        CONFIG,
    )
    assert job["spec"]["backoffLimit"] == 5
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    assert job["spec"]["ttlSecondsAfterFinished"] == 0
    plain = build_job_spec(retrainjob(), 1, None, CONFIG)["spec"]
    assert plain["activeDeadlineSeconds"] == CONFIG.trainer_active_deadline_seconds
    assert "ttlSecondsAfterFinished" not in plain


def test_the_same_inputs_always_build_the_same_job() -> None:
    assert build_job_spec(retrainjob(), 2, 1, CONFIG) == build_job_spec(retrainjob(), 2, 1, CONFIG)


def test_long_retrainjob_names_are_cut_to_a_valid_label_value() -> None:
    body = retrainjob()
    body["metadata"]["name"] = "a" * 62 + "-b" + "c" * 10
    label = build_job_spec(body, 1, None, CONFIG)["metadata"]["labels"]["retrainer.dev/retrainjob"]
    assert len(label) <= 63
    assert label[-1].isalnum()


def test_the_training_pod_meets_the_restricted_pod_security_standard() -> None:
    pod = build_job_spec(retrainjob(), 1, None, CONFIG)["spec"]["template"]["spec"]
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    assert security["fsGroup"] == security["runAsGroup"] == security["runAsUser"]
    assert security["fsGroupChangePolicy"] == "OnRootMismatch"
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # Only volume types the restricted profile allows.
    assert {next(k for k in v if k != "name") for v in pod["volumes"]} <= {
        "persistentVolumeClaim",
        "emptyDir",
    }


def test_the_security_contexts_come_from_the_chart_values_when_set() -> None:
    config = OperatorConfig.from_env(
        {
            "RETRAINER_TRAINER_POD_SECURITY_CONTEXT": '{"runAsUser": 2000, "runAsNonRoot": true}',
            "RETRAINER_TRAINER_SECURITY_CONTEXT": '{"readOnlyRootFilesystem": false}',
        }
    )
    pod = build_job_spec(retrainjob(), 1, None, config)["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsUser": 2000, "runAsNonRoot": True}
    assert pod["containers"][0]["securityContext"] == {"readOnlyRootFilesystem": False}
