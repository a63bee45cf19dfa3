"""Bad input exits 3 with a message naming the problem; an unreachable MLflow exits 1; in
neither case does anything reach models/. The trainer runs as a subprocess with the world's
MinIO and MLflow in its environment."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from retrainer_demo import shapes
from retrainer_world.world import World
from test_trainer_support import Claim, run_trainer, spec

pytestmark = pytest.mark.integration

Breaker = Callable[[Path], None]


def remove_data_yaml(dataset: Path) -> None:
    (dataset / "data.yaml").unlink()


def class_out_of_range(dataset: Path) -> None:
    (dataset / "labels" / "train" / "train_0004.txt").write_text(
        "0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.1 0.1\n"
    )


def corrupt_image(dataset: Path) -> None:
    (dataset / "images" / "val" / "val_0002.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (remove_data_yaml, "dataset: data.yaml not found"),
        (class_out_of_range, "labels/train/train_0004.txt:2: class id 5 out of range"),
        (corrupt_image, "images/val/val_0002.png: not a decodable image"),
    ],
)
def test_bad_dataset_fails_with_exit_3_and_its_own_message(
    world: World, tmp_path: Path, breaker: Breaker, message: str
) -> None:
    claim = Claim(world, tmp_path / "claim", tmp_path / "work")
    dataset = shapes.generate_dataset(claim.root / "datasets" / "shapes", seed=9, train=6, val=3)
    breaker(dataset)
    result = run_trainer(claim.env(spec("broken"), 1))
    assert result.rc == 3, result.explain()
    (failed,) = result.named("failed")
    assert failed["reason"] == "BadInput" and message in failed["message"]
    assert result.termination is not None
    assert result.termination["error"]["exitCode"] == 3
    assert message in result.termination["error"]["message"]
    assert not (claim.root / "broken" / "models").exists()


def test_unknown_base_version_fails_with_exit_3(world: World, tmp_path: Path) -> None:
    claim = Claim(world, tmp_path / "claim", tmp_path / "work")
    shapes.generate_dataset(claim.root / "datasets" / "shapes", seed=9, train=6, val=3)
    body = spec("line", baseModel={"version": "7"})
    result = run_trainer(claim.env(body, 8, base_version=7))
    assert result.rc == 3, result.explain()
    assert "version 7 of model line 'line' not found" in result.named("failed")[0]["message"]
    assert not (claim.root / "line" / "models").exists()


def test_unreachable_mlflow_fails_with_exit_1_and_says_so(world: World, tmp_path: Path) -> None:
    claim = Claim(world, tmp_path / "claim", tmp_path / "work")
    shapes.generate_dataset(claim.root / "datasets" / "shapes", seed=9, train=6, val=3)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = claim.env(spec("offline"), 1, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}")
    result = run_trainer(env)
    assert result.rc == 1, result.explain()
    (failed,) = result.named("failed")
    assert f"MLflow at http://127.0.0.1:{port} is unreachable" in failed["message"]
    assert not (claim.root / "offline" / "models").exists()
    assert not result.named("train.start")
