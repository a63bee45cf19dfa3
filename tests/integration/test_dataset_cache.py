"""The dataset cache against the world's real MinIO: an unchanged folder costs no byte, a
changed object (its ETag differs) is fetched again and only it, a corrupted blob is caught and
fetched again, a cut-off download resumes where it stopped, and two trainers at once share the
cache, each object fetched once between them. The next version on unchanged data reuses the
working tree and Ultralytics' label cache in it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from retrainer_demo import shapes
from retrainer_trainer import fetch
from retrainer_trainer.datacache import Cache
from retrainer_world.world import World
from test_trainer_support import TINY, Claim, run_trainer, spec

pytestmark = pytest.mark.integration

BUCKET = "datasets"


def uploaded(world: World, tmp_path: Path) -> tuple[str, Path]:
    """A small shapes dataset in MinIO under a fresh prefix; its URI and local folder."""
    folder = shapes.generate_dataset(tmp_path / "source", seed=5, train=6, val=2)
    prefix = f"cache-{secrets.token_hex(4)}/shapes"
    shapes.upload_folder(world.minio_client(), BUCKET, prefix, folder)
    return f"s3://{BUCKET}/{prefix}", folder


def fetch_into(
    client: Any, uri: str, claim: Path, *, remember: bool = True
) -> tuple[fetch.Source, fetch.Fetched]:
    cache = Cache(claim, max_bytes=10**9)
    source, stats = fetch.fetch_prefix(client, uri, cache, concurrency=4, field_name="test")
    if remember:
        fetch.remember(cache, source, tree_reused=False)
    return source, stats


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_unchanged_folder_comes_from_the_cache_without_a_byte_fetched(
    world: World, tmp_path: Path
) -> None:
    uri, folder = uploaded(world, tmp_path)
    files = sorted(p for p in folder.rglob("*") if p.is_file())

    first, cold = fetch_into(world.minio_client(), uri, tmp_path / "claim")
    again, warm = fetch_into(world.minio_client(), uri, tmp_path / "claim")

    assert (cold.fetched_files, cold.fetched_bytes) == (
        len(files),
        sum(f.stat().st_size for f in files),
    )
    assert (warm.fetched_files, warm.fetched_bytes, warm.cached_files) == (0, 0, len(files))
    assert {rel: f.sha256 for rel, f in again.files.items()} == {
        p.relative_to(folder).as_posix(): sha(p.read_bytes()) for p in files
    }
    assert {rel: f.path for rel, f in again.files.items()} == {
        rel: f.path for rel, f in first.files.items()
    }


def test_an_object_whose_etag_changed_is_fetched_again_and_only_it(
    world: World, tmp_path: Path
) -> None:
    uri, _ = uploaded(world, tmp_path)
    claim = tmp_path / "claim"
    before, _ = fetch_into(world.minio_client(), uri, claim)
    relabelled = b"2 0.5 0.5 0.25 0.25\n"
    key = f"{uri.removeprefix(f's3://{BUCKET}/')}/labels/train/train_0001.txt"
    world.minio_client().put_object(BUCKET, key, io.BytesIO(relabelled), len(relabelled))

    after, stats = fetch_into(world.minio_client(), uri, claim)

    assert (stats.fetched_files, stats.fetched_bytes) == (1, len(relabelled))
    changed = after.files["labels/train/train_0001.txt"]
    assert changed.sha256 == sha(relabelled) != before.files["labels/train/train_0001.txt"].sha256
    assert Path(changed.path).read_bytes() == relabelled


def test_a_corrupted_cache_entry_is_detected_and_fetched_again(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri, folder = uploaded(world, tmp_path)
    claim = tmp_path / "claim"
    first, _ = fetch_into(world.minio_client(), uri, claim)
    blob = Path(first.files["images/val/val_0000.png"].path)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01  # the fault: one flipped bit in a cached blob on the claim
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))
    capsys.readouterr()

    again, stats = fetch_into(world.minio_client(), uri, claim)

    original = (folder / "images" / "val" / "val_0000.png").read_bytes()
    assert (stats.refetched_corrupt, stats.fetched_files) == (1, 1)
    assert Path(again.files["images/val/val_0000.png"].path).read_bytes() == original
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["blob"] for e in events if e["event"] == "dataset.cache.corrupt"] == [sha(original)]


class CutOnce:
    """A MinIO client whose first GET of each object breaks after its first chunk (the fault:
    a connection reset mid-download); it records each GET's offset."""

    def __init__(self, client: Any) -> None:
        self.client, self.offsets, self.cut = client, [], set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def get_object(self, bucket: str, key: str, offset: int = 0, **kwargs: Any) -> Any:
        self.offsets.append(offset)
        response = self.client.get_object(bucket, key, offset=offset, **kwargs)
        if key in self.cut:
            return response
        self.cut.add(key)
        real_stream = response.stream

        def stream(amount: int) -> Any:
            chunks = real_stream(amount)
            yield next(chunks)
            raise ConnectionResetError("connection reset by the fault")

        response.stream = stream
        return response


def test_a_download_cut_off_midway_resumes_where_it_stopped(world: World, tmp_path: Path) -> None:
    payload = secrets.token_bytes(3 * fetch.CHUNK + 123)
    prefix = f"cache-{secrets.token_hex(4)}/big"
    world.minio_client().put_object(BUCKET, f"{prefix}/blob.bin", io.BytesIO(payload), len(payload))
    client = CutOnce(world.minio_client())

    source, stats = fetch_into(client, f"s3://{BUCKET}/{prefix}", tmp_path / "claim")

    assert client.offsets == [0, fetch.CHUNK], "the retry asked only for the rest"
    assert stats.retries == 1 and stats.fetched_files == 1
    assert source.files["blob.bin"].sha256 == sha(payload)
    assert Path(source.files["blob.bin"].path).read_bytes() == payload


def test_a_damaged_partial_download_left_by_a_dead_pod_is_not_completed_but_fetched_anew(
    world: World, tmp_path: Path
) -> None:
    payload = secrets.token_bytes(2 * fetch.CHUNK + 7)
    prefix = f"cache-{secrets.token_hex(4)}/big"
    key = f"{prefix}/blob.bin"
    world.minio_client().put_object(BUCKET, key, io.BytesIO(payload), len(payload))
    stat = world.minio_client().stat_object(BUCKET, key)
    cache = Cache(tmp_path / "claim", max_bytes=10**9)
    part = cache.part(cache.key_id(BUCKET, key, stat.etag, len(payload)))
    part.write_bytes(b"\0" * fetch.CHUNK)  # the fault: half a download, and wrong bytes

    source, stats = fetch_into(world.minio_client(), f"s3://{BUCKET}/{prefix}", tmp_path / "claim")

    assert source.files["blob.bin"].sha256 == sha(payload)
    assert Path(source.files["blob.bin"].path).read_bytes() == payload
    assert stats.retries == 1 and not part.exists()


TRAINER = """
import json, sys, time
from pathlib import Path
from retrainer_contract import objectstore
from retrainer_trainer import fetch
from retrainer_trainer.datacache import Cache
go = Path(sys.argv[3])
while not go.exists():
    time.sleep(0.01)
source, stats = fetch.fetch_prefix(objectstore.minio_client(), sys.argv[1],
    Cache(Path(sys.argv[2]), 10**9), concurrency=8, field_name="test")
print(json.dumps({"fetched": stats.fetched_files, "cached": stats.cached_files,
    "files": {rel: f.sha256 for rel, f in source.files.items()}}))
"""


def test_two_trainers_at_once_share_the_cache_and_fetch_each_object_once(
    world: World, tmp_path: Path
) -> None:
    uri, folder = uploaded(world, tmp_path)
    go = tmp_path / "go"
    env = {**os.environ, **world.env()}
    trainers = [
        subprocess.Popen(
            [sys.executable, "-c", TRAINER, uri, str(tmp_path / "claim"), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    go.touch()  # both start together
    # Each prints its events, then its result as the last line.
    results = [json.loads(t.communicate(timeout=120)[0].splitlines()[-1]) for t in trainers]

    assert [t.returncode for t in trainers] == [0, 0]
    count = sum(1 for p in folder.rglob("*") if p.is_file())
    assert sum(r["fetched"] for r in results) == count, "each object fetched once in all"
    assert [r["fetched"] + r["cached"] for r in results] == [count, count]
    assert results[0]["files"] == results[1]["files"]
    assert results[0]["files"]["data.yaml"] == sha((folder / "data.yaml").read_bytes())


def test_the_next_version_on_unchanged_data_reuses_the_tree_and_ultralytics_label_cache(
    world: World, tmp_path: Path
) -> None:
    claim = Claim(world, tmp_path / "claim", tmp_path / "work")
    shapes.generate_dataset(claim.root / "datasets" / "shapes", seed=2, train=8, val=4)
    model = f"cache-line-{claim.token}"
    body = spec(model, training={**TINY, "epochs": 1}, mlflow={"experiment": model})

    v1 = run_trainer(claim.env(body, 1))
    v2 = run_trainer(claim.env(body, 2))

    assert v1.rc == 0, v1.explain()
    assert v2.rc == 0, v2.explain()
    (ready1,), (ready2,) = v1.named("dataset.ready"), v2.named("dataset.ready")
    assert (ready1["reused"], ready2["reused"]) == (False, True)
    assert ready2["tree"] == ready1["tree"] and ready2["sha256"] == ready1["sha256"]
    # Ultralytics writes labels/<split>.cache on a first scan and says so; v2 loads it as is.
    assert "New cache created" in v1.stdout + v1.stderr
    assert "New cache created" not in v2.stdout + v2.stderr
    assert (Path(ready2["tree"]) / "labels" / "train.cache").is_file()
