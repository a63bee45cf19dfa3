"""The operator reads its settings from the environment with the documented defaults."""

from __future__ import annotations

import pytest
from retrainer_operator.config import ConfigError, OperatorConfig, image_allowed, image_repository


def test_empty_environment_gives_the_documented_defaults() -> None:
    config = OperatorConfig.from_env({})
    assert config.trainer_image == "ghcr.io/retrainer/trainer:0.1.0"
    assert config.claim_name == "retrainer-models"
    assert config.storage_root == "/var/lib/retrainer"
    assert config.mlflow_tracking_uri == "http://retrainer-mlflow:5000"
    assert config.s3_endpoint == "http://retrainer-minio:9000"
    assert config.s3_secret_name == "minio-credentials"
    assert config.trainer_service_account == "retrainer-trainer"
    assert (config.metrics_port, config.health_port) == (8080, 8081)
    assert config.progress_interval == 10.0
    assert config.log_format == "json"
    assert config.clusterwide


def test_namespace_list_is_split_and_disables_clusterwide_mode() -> None:
    config = OperatorConfig.from_env({"RETRAINER_NAMESPACES": " team-a, team-b ,"})
    assert config.namespaces == ("team-a", "team-b")
    assert not config.clusterwide


def test_trailing_slashes_are_dropped_from_endpoints() -> None:
    config = OperatorConfig.from_env(
        {
            "RETRAINER_MLFLOW_TRACKING_URI": "http://mlflow:5000/",
            "RETRAINER_S3_ENDPOINT": "http://minio:9000/",
        }
    )
    assert config.mlflow_tracking_uri == "http://mlflow:5000"
    assert config.s3_endpoint == "http://minio:9000"


def test_bad_port_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="RETRAINER_METRICS_PORT"):
        OperatorConfig.from_env({"RETRAINER_METRICS_PORT": "eighty"})


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"json.*plain"):
        OperatorConfig.from_env({"RETRAINER_LOG_FORMAT": "xml"})


def test_credentials_never_appear_in_the_repr() -> None:
    config = OperatorConfig.from_env(
        {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}
    )
    assert config.aws_secret_access_key == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(config)
    assert "AKIDEXAMPLE" not in repr(config)


def test_training_jobs_are_bounded_by_default() -> None:
    config = OperatorConfig.from_env({})
    assert config.trainer_active_deadline_seconds == 86400
    assert config.trainer_workdir_size_limit == "50Gi"
    config = OperatorConfig.from_env(
        {
            "RETRAINER_TRAINER_ACTIVE_DEADLINE_SECONDS": "3600",
            "RETRAINER_TRAINER_WORKDIR_SIZE_LIMIT": "1.5Ti",
        }
    )
    assert config.trainer_active_deadline_seconds == 3600
    assert config.trainer_workdir_size_limit == "1.5Ti"


@pytest.mark.parametrize("value", ["0", "59", "2592001", "one day", "-1"])
def test_a_deadline_outside_the_crds_range_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="RETRAINER_TRAINER_ACTIVE_DEADLINE_SECONDS"):
        OperatorConfig.from_env({"RETRAINER_TRAINER_ACTIVE_DEADLINE_SECONDS": value})


@pytest.mark.parametrize("value", ["0", "0Gi", "50GB", "-1Gi", "lots", "50 Gi"])
def test_a_size_limit_that_is_no_positive_quantity_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match=r"RETRAINER_TRAINER_WORKDIR_SIZE_LIMIT.*50Gi"):
        OperatorConfig.from_env({"RETRAINER_TRAINER_WORKDIR_SIZE_LIMIT": value})


def test_allowed_images_default_to_the_trainer_images_repository() -> None:
    assert OperatorConfig.from_env({}).allowed_trainer_images == ("ghcr.io/retrainer/trainer",)
    config = OperatorConfig.from_env(
        {"RETRAINER_TRAINER_IMAGE": "registry.example.com:5000/mlops/trainer@sha256:" + "a" * 64}
    )
    assert config.allowed_trainer_images == ("registry.example.com:5000/mlops/trainer",)


def test_allowed_images_are_a_comma_separated_list() -> None:
    config = OperatorConfig.from_env(
        {"RETRAINER_ALLOWED_TRAINER_IMAGES": " ghcr.io/retrainer/trainer, registry.local/ml/ ,"}
    )
    assert config.allowed_trainer_images == ("ghcr.io/retrainer/trainer", "registry.local/ml/")


@pytest.mark.parametrize(
    "entry", ["ghcr.io/retrainer/trainer:0.1.0", "ghcr.io/x@sha256:" + "a" * 64, "Bad Name"]
)
def test_an_allowed_image_with_a_tag_or_digest_is_refused(entry: str) -> None:
    with pytest.raises(ConfigError, match="RETRAINER_ALLOWED_TRAINER_IMAGES"):
        OperatorConfig.from_env({"RETRAINER_ALLOWED_TRAINER_IMAGES": entry})


def test_a_trainer_image_that_is_no_reference_is_refused() -> None:
    with pytest.raises(ConfigError, match="RETRAINER_TRAINER_IMAGE"):
        OperatorConfig.from_env({"RETRAINER_TRAINER_IMAGE": "ghcr.io/Retrainer/trainer"})


@pytest.mark.parametrize(
    ("reference", "repository"),
    [
        ("ghcr.io/retrainer/trainer:0.2.0", "ghcr.io/retrainer/trainer"),
        ("ghcr.io/retrainer/trainer@sha256:" + "0" * 64, "ghcr.io/retrainer/trainer"),
        ("ghcr.io/retrainer/trainer:0.2.0@sha256:" + "0" * 64, "ghcr.io/retrainer/trainer"),
        ("localhost:5000/trainer:dev", "localhost:5000/trainer"),
        ("localhost/trainer", "localhost/trainer"),
        ("python:3.11", "docker.io/library/python"),
        ("ultralytics/ultralytics", "docker.io/ultralytics/ultralytics"),
        ("index.docker.io/library/python", "docker.io/library/python"),
        ("GHCR.IO/retrainer/trainer", "ghcr.io/retrainer/trainer"),
        ("ghcr.io/retrainer/Trainer", None),
        ("ghcr.io/retrainer/trainer:", None),
        ("ghcr.io/retrainer/../trainer", None),
        ("ghcr.io/retrainer/trainer:0.1 ", "ghcr.io/retrainer/trainer"),
        ("", None),
    ],
)
def test_image_repository_is_what_the_runtime_pulls(reference: str, repository: str | None) -> None:
    assert image_repository(reference) == repository


@pytest.mark.parametrize(
    ("reference", "allowed"),
    [
        ("ghcr.io/retrainer/trainer", True),
        ("ghcr.io/retrainer/trainer:0.2.0", True),
        ("ghcr.io/retrainer/trainer@sha256:" + "f" * 64, True),
        ("ghcr.io/retrainer/trainer-evil:0.2.0", False),
        ("ghcr.io/retrainer/trainer/evil:0.2.0", False),
        ("ghcr.io/retrainer:0.2.0", False),
        ("evil.io/ghcr.io/retrainer/trainer:1", False),
        ("registry.local/ml/trainer:1", True),
        ("registry.local/ml/team/trainer:1", True),
        ("registry.local/mlops/trainer:1", False),
        ("registry.local/ml", False),
        ("python:3.11", True),
        ("docker.io/library/python:3.12", True),
        ("pythonista:3.11", False),
        ("not a reference", False),
    ],
)
def test_the_allowlist_matches_whole_repositories_or_prefixes(
    reference: str, allowed: bool
) -> None:
    entries = ("ghcr.io/retrainer/trainer", "registry.local/ml/", "python")
    assert image_allowed(reference, entries) is allowed


@pytest.mark.parametrize("raw", ["[1]", "{not json", '"text"'])
def test_a_security_context_that_is_not_a_json_object_is_refused_naming_the_variable(
    raw: str,
) -> None:
    with pytest.raises(ConfigError, match="RETRAINER_TRAINER_POD_SECURITY_CONTEXT"):
        OperatorConfig.from_env({"RETRAINER_TRAINER_POD_SECURITY_CONTEXT": raw})


def test_the_operator_image_for_upkeep_jobs_is_read_and_checked() -> None:
    assert OperatorConfig.from_env({}).operator_image == "ghcr.io/retrainer/operator:0.1.0"
    given = OperatorConfig.from_env({"RETRAINER_OPERATOR_IMAGE": "registry.example.com/op:2.0"})
    assert given.operator_image == "registry.example.com/op:2.0"
    with pytest.raises(ConfigError, match="RETRAINER_OPERATOR_IMAGE"):
        OperatorConfig.from_env({"RETRAINER_OPERATOR_IMAGE": "Not An Image"})


def test_the_dataset_cache_settings_default_and_are_checked() -> None:
    config = OperatorConfig.from_env({})
    assert (config.dataset_cache_max_size, config.dataset_fetch_concurrency) == ("100Gi", 16)
    config = OperatorConfig.from_env(
        {"RETRAINER_DATASET_CACHE_MAX_SIZE": "2Ti", "RETRAINER_DATASET_FETCH_CONCURRENCY": "64"}
    )
    assert (config.dataset_cache_max_size, config.dataset_fetch_concurrency) == ("2Ti", 64)
    with pytest.raises(ConfigError, match="RETRAINER_DATASET_CACHE_MAX_SIZE"):
        OperatorConfig.from_env({"RETRAINER_DATASET_CACHE_MAX_SIZE": "2TB"})
    with pytest.raises(ConfigError, match="RETRAINER_DATASET_FETCH_CONCURRENCY"):
        OperatorConfig.from_env({"RETRAINER_DATASET_FETCH_CONCURRENCY": "0"})
