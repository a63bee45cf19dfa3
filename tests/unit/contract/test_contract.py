"""The contract's writer/reader pairs agree: what one program writes, the other reads back."""

from __future__ import annotations

import pytest
from retrainer_contract import documents, exits, tracking, versions
from retrainer_contract import env as trainer_env


def told(**overrides: object) -> trainer_env.TrainerEnv:
    values: dict[str, object] = {
        "spec": {"model": "shapes", "dataset": {"uri": "datasets/shapes"}},
        "version": 4,
        "name": "shapes-4",
        "namespace": "team-a",
        "uid": "0f3c-uid",
        "base_version": 3,
        "claim_name": "models",
        "tracking_uri": "http://mlflow:5000",
        "s3_endpoint": "http://minio:9000",
    }
    values.update(overrides)
    return trainer_env.TrainerEnv(**values)  # type: ignore[arg-type]


def as_pod_env(container_env: list[dict[str, object]]) -> dict[str, str]:
    """What the kubelet gives the process: plain values, Secret references resolved."""
    secrets = {trainer_env.SECRET_ACCESS_KEY_FIELD: "AK", trainer_env.SECRET_SECRET_KEY_FIELD: "SK"}
    out = {}
    for var in container_env:
        if "value" in var:
            out[str(var["name"])] = str(var["value"])
        else:
            ref = var["valueFrom"]["secretKeyRef"]  # type: ignore[index]
            out[str(var["name"])] = secrets[ref["key"]]
    return out


def test_what_the_operator_writes_the_trainer_reads_back() -> None:
    written = told()
    read = trainer_env.read(as_pod_env(trainer_env.container_env(written, "minio-credentials")))
    assert read.spec == written.spec
    assert (read.version, read.base_version, read.uid) == (4, 3, "0f3c-uid")
    assert (read.name, read.namespace, read.claim_name) == ("shapes-4", "team-a", "models")
    assert read.storage_root == trainer_env.DEFAULT_STORAGE_ROOT
    assert read.termination_message_path == trainer_env.DEFAULT_TERMINATION_MESSAGE_PATH
    assert (read.access_key, read.secret_key) == ("AK", "SK")


def test_credentials_travel_only_as_secret_references() -> None:
    listed = trainer_env.container_env(told(), "minio-credentials")
    by_name = {v["name"]: v for v in listed}
    for var in (trainer_env.ACCESS_KEY, trainer_env.SECRET_KEY):
        assert "value" not in by_name[var]
        assert by_name[var]["valueFrom"]["secretKeyRef"]["name"] == "minio-credentials"
    assert "AK" not in repr(told(access_key="AK"))


def test_without_a_base_version_the_variable_is_absent_and_reads_as_none() -> None:
    listed = trainer_env.container_env(told(base_version=None), "s")
    assert trainer_env.BASE_VERSION not in {v["name"] for v in listed}
    assert trainer_env.read(as_pod_env(listed)).base_version is None


def test_the_champion_version_travels_only_when_there_is_one() -> None:
    with_champion = trainer_env.container_env(told(champion_version=2), "s")
    assert trainer_env.read(as_pod_env(with_champion)).champion_version == 2
    without = trainer_env.container_env(told(), "s")
    assert trainer_env.CHAMPION_VERSION not in {v["name"] for v in without}
    assert trainer_env.read(as_pod_env(without)).champion_version is None


def test_the_defaults_are_the_same_on_both_sides() -> None:
    minimal = {trainer_env.SPEC: '{"model": "m"}', trainer_env.VERSION: "1"}
    read = trainer_env.read(minimal)
    assert read.claim_name == trainer_env.TrainerEnv(spec={}, version=1).claim_name
    assert read.storage_root == trainer_env.TrainerEnv(spec={}, version=1).storage_root


def test_the_dataset_cache_settings_travel_and_default_on_both_sides() -> None:
    written = told(dataset_cache_max_size="1.5Ti", dataset_fetch_concurrency=64)
    read = trainer_env.read(as_pod_env(trainer_env.container_env(written, "s")))
    assert (read.dataset_cache_max_size, read.dataset_fetch_concurrency) == ("1.5Ti", 64)
    minimal = trainer_env.read({trainer_env.SPEC: "{}", trainer_env.VERSION: "1"})
    assert minimal.dataset_cache_max_size == trainer_env.DEFAULT_DATASET_CACHE_MAX_SIZE == "100Gi"
    assert minimal.dataset_fetch_concurrency == trainer_env.DEFAULT_DATASET_FETCH_CONCURRENCY


@pytest.mark.parametrize(
    ("text", "size"),
    [("100Gi", 100 * 2**30), ("1.5Ti", int(1.5 * 2**40)), ("500M", 500 * 10**6), ("4096", 4096)],
)
def test_a_quantity_reads_as_bytes(text: str, size: int) -> None:
    assert trainer_env.quantity_bytes(text) == size


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {
                trainer_env.SPEC: "{}",
                trainer_env.VERSION: "1",
                trainer_env.DATASET_CACHE_MAX_SIZE: "9GB",
            },
            trainer_env.DATASET_CACHE_MAX_SIZE,
        ),
        (
            {
                trainer_env.SPEC: "{}",
                trainer_env.VERSION: "1",
                trainer_env.DATASET_FETCH_CONCURRENCY: "0",
            },
            trainer_env.DATASET_FETCH_CONCURRENCY,
        ),
        ({}, trainer_env.SPEC),
        ({trainer_env.SPEC: "{not json"}, trainer_env.SPEC),
        ({trainer_env.SPEC: "[1]"}, trainer_env.SPEC),
        ({trainer_env.SPEC: "{}", trainer_env.VERSION: "0"}, trainer_env.VERSION),
        ({trainer_env.SPEC: "{}", trainer_env.VERSION: "v2"}, trainer_env.VERSION),
        (
            {trainer_env.SPEC: "{}", trainer_env.VERSION: "2", trainer_env.BASE_VERSION: "x"},
            trainer_env.BASE_VERSION,
        ),
        (
            {trainer_env.SPEC: "{}", trainer_env.VERSION: "2", trainer_env.CHAMPION_VERSION: "0"},
            trainer_env.CHAMPION_VERSION,
        ),
    ],
)
def test_a_bad_variable_is_named_in_the_error(env: dict[str, str], named: str) -> None:
    with pytest.raises(trainer_env.EnvError, match=named):
        trainer_env.read(env)


def test_the_run_filter_names_the_owner_and_the_version_and_escapes_quotes() -> None:
    query = tracking.run_filter("it's-uid", 7)
    assert query == (
        f"tags.`{tracking.TAG_UID}` = 'it\\'s-uid' and tags.`{tracking.TAG_VERSION}` = '7'"
    )
    tags = tracking.run_tags("u", "team-a", "shapes", 7, "v6")
    assert tags[tracking.TAG_UID] == "u" and tags[tracking.TAG_VERSION] == "7"
    assert tags[tracking.TAG_NAMESPACE] == "team-a"
    assert tracking.model_filter("team-a", "shapes") == (
        f"tags.`{tracking.TAG_NAMESPACE}` = 'team-a' and tags.`{tracking.TAG_MODEL}` = 'shapes'"
    )


def test_the_experiment_defaults_to_the_model_line() -> None:
    assert tracking.experiment_name({"model": "shapes"}) == "shapes"
    assert tracking.experiment_name({"model": "shapes", "mlflow": {"experiment": "e"}}) == "e"


def test_latest_verified_ignores_unverified_versions() -> None:
    evidence = [(1, True), (2, True), (3, False)]
    assert versions.latest_verified(evidence) == 2
    assert versions.latest_verified([]) is None
    assert versions.resolve(versions.LATEST, evidence) == 2
    assert versions.resolve("1", evidence) == 1
    assert versions.resolve("3", evidence) is None
    assert versions.resolve("9", evidence) is None


def test_a_failure_document_reads_back_as_reason_and_message() -> None:
    doc = documents.failure("BadInput", "labels/x.txt: class 7", exits.BAD_INPUT)
    import json

    assert documents.failure_text(json.dumps(doc)) == "BadInput: labels/x.txt: class 7"
    assert doc["error"]["exitCode"] == exits.BAD_INPUT
    assert documents.failure_text("a log tail") == "a log tail"
