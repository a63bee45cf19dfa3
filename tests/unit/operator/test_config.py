"""The operator reads its settings from the environment with the documented defaults."""

from __future__ import annotations

import pytest
from retrainer_operator.config import ConfigError, OperatorConfig


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
