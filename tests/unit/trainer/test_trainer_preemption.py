"""SIGTERM stops the trainer at once, except between the end of an epoch's validation and the
end of its callbacks: last.pt, its record and the epoch's metrics go together (preemption.py).
The signal is real (os.kill to this process), delivered at named points of an epoch's
callbacks, in the order Ultralytics calls them."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from retrainer_contract import layout
from retrainer_trainer import preemption, runfolder, training
from retrainer_trainer.errors import Preempted


@pytest.fixture(autouse=True)
def handler() -> Iterator[None]:
    before = signal.getsignal(signal.SIGTERM)
    preemption.install()
    yield
    with contextlib.suppress(Preempted):  # a test that failed half-way leaves nothing behind
        preemption.release()
    signal.signal(signal.SIGTERM, before)


def sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # handled in this (the main) thread before returning


def test_a_sigterm_outside_a_hold_stops_at_once() -> None:
    with pytest.raises(Preempted):
        sigterm()


def test_a_held_sigterm_is_raised_when_the_hold_ends_and_only_once() -> None:
    preemption.hold()
    sigterm()  # nothing raised: held
    with pytest.raises(Preempted):
        preemption.release()
    preemption.release()  # nothing left pending


def test_a_training_that_fails_leaves_no_hold_behind() -> None:
    with pytest.raises(RuntimeError), preemption.training():
        preemption.hold()
        sigterm()
        raise RuntimeError("the failure in flight")
    assert not preemption.held()
    with pytest.raises(Preempted):  # the next SIGTERM stops at once again
        sigterm()


def test_a_training_ending_with_a_sigterm_held_raises_it() -> None:
    with pytest.raises(Preempted), preemption.training():
        preemption.hold()
        sigterm()


class Epoch:
    """One epoch's callbacks over a real run folder, in Ultralytics' order."""

    def __init__(self, tmp_path: Path) -> None:
        self.paths = layout.VersionPaths.for_version(tmp_path, "m", 1)
        self.paths.last_checkpoint.parent.mkdir(parents=True)
        self.logged: list[int] = []
        self.callbacks = training._Callbacks(lambda e, n, m: self.logged.append(e), self.paths)
        self.trainer = SimpleNamespace(epoch=0, epochs=3, metrics={}, stop=False)

    def run(self, sigterm_at: str) -> None:
        steps: list[tuple[str, Any]] = [
            ("epoch_start", lambda: self.callbacks.train_epoch_start(self.trainer)),
            ("epoch_end", lambda: self.callbacks.train_epoch_end(self.trainer)),
            ("val_start", lambda: self.callbacks.val_start(None)),
            ("validating", lambda: None),
            ("val_end", lambda: self.callbacks.val_end(None)),
            ("last_pt_written", self.write_last_pt),
            ("model_save", lambda: self.callbacks.model_save(self.trainer)),
            ("fit_epoch_end", lambda: self.callbacks.fit_epoch_end(self.trainer)),
        ]
        for name, step in steps:
            if name == sigterm_at:
                sigterm()
            step()

    def write_last_pt(self) -> None:
        self.paths.last_checkpoint.write_bytes(b"epoch %d" % self.trainer.epoch)


# Where the SIGTERM lands, and whether the epoch is saved, recorded and logged before it stops.
WHERE = {
    "epoch_start": False,  # training
    "validating": False,
    "val_end": False,  # still validating: on_val_end has not run
    "last_pt_written": True,  # held from on_val_end to the end of on_fit_epoch_end
    "model_save": True,
    "fit_epoch_end": True,
}


@pytest.mark.parametrize("at", list(WHERE))
def test_a_sigterm_stops_at_once_or_after_the_epochs_save_is_recorded_and_logged(
    tmp_path: Path, at: str
) -> None:
    epoch = Epoch(tmp_path)
    with pytest.raises(Preempted):
        epoch.run(sigterm_at=at)
    assert not preemption.held()
    if not WHERE[at]:
        assert epoch.logged == []
        assert not epoch.paths.last_checkpoint.exists()
        return
    assert epoch.logged == [1]
    saved = runfolder.read_record(epoch.paths)
    assert saved is not None
    assert saved.files[runfolder.LAST] == runfolder.digest(epoch.paths.last_checkpoint)
