"""best.pt of a finished version is put back only from a copy whose bytes hash to what was
recorded; when none does the version fails for good, when one cannot be read it is retried.
MinIO is a small in-memory object store; faults are raised from it or written into files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from minio.error import S3Error
from retrainer_contract import exits, integrity, layout
from retrainer_trainer import repair, runfolder
from retrainer_trainer.errors import BadInput, CorruptedWeights, TrainerError

GOOD = b"the weights as trained" * 100
BAD = b"the weights, one bit off" * 100
MLFLOW_URI = "s3://mlflow/1/run/artifacts/models/retrained_v1.pt"


class Response:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, chunk: int) -> Any:
        yield from (self.data[i : i + chunk] for i in range(0, len(self.data), chunk))

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class Store:
    """The two calls of minio.Minio the repair uses, over a dict (or an outage)."""

    def __init__(self, objects: dict[str, bytes], down: bool = False) -> None:
        self.objects = objects
        self.down = down

    def _get(self, bucket: str, key: str) -> bytes:
        if self.down:  # fault point: the object store
            raise ConnectionError("MinIO: connection refused")
        if f"{bucket}/{key}" not in self.objects:
            raise S3Error(None, "NoSuchKey", "no such key", key, "", "")  # type: ignore[arg-type]
        return self.objects[f"{bucket}/{key}"]

    def stat_object(self, bucket: str, key: str) -> Any:
        return len(self._get(bucket, key))

    def get_object(self, bucket: str, key: str) -> Response:
        return Response(self._get(bucket, key))


@pytest.fixture
def paths(tmp_path: Path) -> layout.VersionPaths:
    paths = layout.VersionPaths.for_version(tmp_path, "shapes", 1)
    paths.training_run.parent.mkdir(parents=True)
    paths.training_run.write_bytes(BAD)
    return paths


def plan_for(paths: layout.VersionPaths) -> runfolder.Plan:
    good = runfolder.Digest(*integrity.sha256_stream([GOOD]))
    actual = integrity.sha256_file(paths.training_run)[0]
    return runfolder.Plan(
        runfolder.FINISHED, best=good, actual=actual, recorded_in=runfolder.RECORD
    )


def copies(paths: layout.VersionPaths) -> list[repair.Copy]:
    return [
        repair.Copy(layout.PRODUCTION, paths.uri("models", paths.production)),
        repair.Copy(layout.QUICK_ACCESS, paths.uri("models", paths.quick_access)),
        repair.Copy(layout.MLFLOW, MLFLOW_URI),
    ]


def restore(paths: layout.VersionPaths, client: Store, *, published: bool = True) -> bool:
    return repair.restore(
        paths.training_run,
        plan_for(paths),
        copies(paths),
        storage_root=paths.root,
        client=client,
        tracking_uri="",
        published=published,
    )


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def events(out: str, name: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith('{"ts"')]
    return [e for e in lines if e["event"] == name]


def test_best_pt_comes_back_from_the_first_copy_with_the_recorded_hash(
    paths: layout.VersionPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    write(paths.production, BAD)  # corrupted the same way: skipped
    write(paths.quick_access, GOOD)

    assert restore(paths, Store({})) is True

    assert paths.training_run.read_bytes() == GOOD
    (repaired,) = events(capsys.readouterr().out, "weights.repaired")
    assert repaired["source"] == layout.QUICK_ACCESS
    assert repaired["sha256"] == integrity.sha256_stream([GOOD])[0]


def test_the_mlflow_copy_in_minio_repairs_best_pt_when_the_claim_copies_are_bad(
    paths: layout.VersionPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    write(paths.production, BAD)

    assert restore(paths, Store({MLFLOW_URI.removeprefix("s3://"): GOOD})) is True

    assert paths.training_run.read_bytes() == GOOD
    (repaired,) = events(capsys.readouterr().out, "weights.repaired")
    assert repaired["source"] == layout.MLFLOW and repaired["uri"] == MLFLOW_URI


def test_no_copy_with_the_recorded_hash_fails_for_good_naming_the_file_and_both_hashes(
    paths: layout.VersionPaths,
) -> None:
    write(paths.production, BAD)
    write(paths.quick_access, BAD)
    plan = plan_for(paths)

    with pytest.raises(CorruptedWeights) as error:
        restore(paths, Store({MLFLOW_URI.removeprefix("s3://"): BAD}))

    message = str(error.value)
    assert plan.best is not None
    assert str(paths.training_run) in message
    assert plan.actual in message and plan.best.sha256 in message
    assert "Retrying cannot help" in message
    assert isinstance(error.value, BadInput) and error.value.exit_code == exits.BAD_INPUT
    assert paths.training_run.read_bytes() == BAD, "nothing was written over"


def test_a_copy_that_cannot_be_read_is_a_retry_not_a_verdict(paths: layout.VersionPaths) -> None:
    write(paths.production, BAD)

    with pytest.raises(TrainerError) as error:
        restore(paths, Store({}, down=True))

    assert not isinstance(error.value, BadInput) and error.value.exit_code == exits.INFRA
    assert "connection refused" in str(error.value)
    assert paths.training_run.read_bytes() == BAD


def test_with_no_copy_anywhere_an_unpublished_version_may_train_again_a_published_may_not(
    paths: layout.VersionPaths,
) -> None:
    assert restore(paths, Store({}), published=False) is False
    with pytest.raises(CorruptedWeights, match="production: missing"):
        restore(paths, Store({}), published=True)
