"""Two trainers on one claim: eviction never takes a blob or a tree another live trainer uses.

Where the claim refuses hardlinks (the fault condition `trainer-no-hardlinks`), working trees
are symlinks into the cache's blobs, so evicting a blob another trainer's tree links would break
that trainer mid-training. The other trainer is a real process running the real dataset step
(`cache_sharing_support.py`); a killed one (SIGKILL) leaves a lease nobody holds, which
eviction clears. A stale tree that another trainer still holds is never moved aside.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from cache_sharing_support import prepare
from retrainer_contract import faults
from retrainer_demo import shapes
from retrainer_trainer import worktree
from retrainer_trainer.datacache import PRIVATE, Cache

SUPPORT = str(Path(__file__).with_name("cache_sharing_support.py"))


class Trainer:
    """Another trainer's process: prepared its dataset, then reads its tree when asked."""

    def __init__(
        self, mode: str, claim: Path, folder: Path, control: Path, *, symlinks: bool = True
    ) -> None:
        control.mkdir(parents=True, exist_ok=True)
        self.control = control
        env = {k: v for k, v in os.environ.items() if k != faults.ENV}
        if symlinks:
            env[faults.ENV] = faults.TRAINER_NO_HARDLINKS
        args = [sys.executable, SUPPORT, mode, str(claim), str(folder), folder.name, str(control)]
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
        self.tree = Path(self._message()["tree"])

    def _message(self) -> dict[str, Any]:
        stdout: IO[str] | None = self.proc.stdout
        assert stdout is not None
        for line in stdout:
            if line.startswith(('{"tree"', '{"broken"')):
                found: dict[str, Any] = json.loads(line)
                return found
        raise AssertionError(f"the trainer ended first (rc={self.proc.wait()})")

    def broken_files(self) -> list[str]:
        """Ask the trainer to read its whole tree now; what it could not read."""
        (self.control / "read").touch()
        broken: list[str] = self._message()["broken"]
        return broken

    def stop(self) -> None:
        (self.control / "stop").touch()
        self.proc.wait(timeout=30)


@pytest.fixture
def datasets(tmp_path: Path) -> dict[str, Path]:
    return {
        name: shapes.generate_dataset(tmp_path / name, seed=seed, train=4, val=2)
        for seed, name in enumerate(("x", "y", "z"))
    }


@pytest.fixture
def trainers() -> Iterator[list[Trainer]]:
    started: list[Trainer] = []
    yield started
    for trainer in started:
        if trainer.proc.poll() is None:
            trainer.stop()


def shas_of(folder: Path) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def blobs_in(cache: Cache) -> set[str]:
    return {p.name for p in cache.blobs.glob("*/*") if "." not in p.name}


def test_eviction_spares_the_blobs_a_live_trainer_reads_through_symlinks_and_clears_a_dead_ones(
    monkeypatch: pytest.MonkeyPatch,
    datasets: dict[str, Path],
    trainers: list[Trainer],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv(faults.ENV, faults.TRAINER_NO_HARDLINKS)
    claim = tmp_path / "claim"
    alive = Trainer("alive", claim, datasets["x"], tmp_path / "alive")
    trainers.append(alive)
    killed = Trainer("killed", claim, datasets["z"], tmp_path / "killed")
    assert killed.proc.wait(timeout=30) < 0, "SIGKILLed, its lease and tree left behind"
    assert any(p.is_symlink() for p in alive.tree.rglob("*")), "the tree is symlinks"

    # This trainer's dataset step, under a cap that every blob is over.
    cache, prep, evicted = prepare(claim, datasets["y"], "y", max_bytes=1)

    assert alive.broken_files() == [], "the live trainer still reads every file of its tree"
    assert (alive.tree / worktree.MARKER).is_file()
    x, y, z = (shas_of(datasets[name]) for name in ("x", "y", "z"))
    assert blobs_in(cache) == x | y, "only the dead trainer's blobs were evicted"
    assert evicted.blobs == len(z - x - y) > 0
    assert evicted.trees == 1 and not killed.tree.exists(), "and its tree, nobody holds it"
    assert len(list(cache.leases.iterdir())) == 2, "the dead trainer's lease was cleared"
    assert prep.shas == y
    cache.close()


def test_a_stale_tree_another_trainer_trains_on_is_left_alone_and_replaced_once_free(
    datasets: dict[str, Path], trainers: list[Trainer], tmp_path: Path
) -> None:
    claim = tmp_path / "claim"
    first = Trainer("alive", claim, datasets["x"], tmp_path / "first", symlinks=False)
    trainers.append(first)
    cache = Cache(claim, 10**9)
    image = datasets["x"] / "images" / "val" / "val_0000.png"
    blob = cache.blob(hashlib.sha256(image.read_bytes()).hexdigest())
    os.chmod(blob, 0o644)
    blob.unlink()  # dropped as corrupted: the next fetch brings a new inode, so the tree is stale

    cache, second, _ = prepare(claim, datasets["x"], "x", max_bytes=10**9, version=2)

    assert second.data_yaml.parent != first.tree and PRIVATE in second.tree
    assert first.broken_files() == [] and (first.tree / worktree.MARKER).is_file()
    cache.close()
    first.stop()

    cache, third, _ = prepare(claim, datasets["x"], "x", max_bytes=10**9, version=3)

    assert third.data_yaml.parent == first.tree and not third.reused, "rebuilt where it was"
    linked = third.data_yaml.parent / "images" / "val" / "val_0000.png"
    assert linked.stat().st_ino == blob.stat().st_ino, "from the blob fetched again"
    assert not second.data_yaml.parent.exists(), "the private tree went once nobody held it"
    cache.close()
