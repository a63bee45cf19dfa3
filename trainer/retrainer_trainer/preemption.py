"""SIGTERM (an eviction, a node drain) stops the trainer at once, except inside the window
where Ultralytics writes a checkpoint and the trainer records it.

A pod resumes only from a last.pt that matches `weights.json` (runfolder). Stopped after
Ultralytics rewrote last.pt but before the record caught up, the next pod would find bytes
that match no record, move the run aside and train from epoch 1 again (every epoch logged
twice in MLflow). So the training callbacks hold SIGTERM from the end of an epoch's
validation to the end of its callbacks (the save, its record, the epoch's metrics); one that
arrives in between is raised as `Preempted` when the hold is released.

Validation itself is not held: it writes nothing a resume reads, and it may be long enough
that a held SIGTERM would run into the pod's grace period and a SIGKILL mid-save.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from retrainer_trainer.errors import Preempted

__all__ = ["held", "hold", "install", "release", "training"]

_held = False
_pending = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _held:
        _pending = True  # raised by release(): nothing is logged in a signal handler
        return
    raise Preempted()


def install() -> None:
    """Make SIGTERM raise Preempted in the main thread (held while a checkpoint is saved)."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def hold() -> None:
    """From here, a SIGTERM waits for release()."""
    global _held
    _held = True


def release() -> None:
    """End the hold; raise Preempted now if a SIGTERM arrived during it."""
    global _held, _pending
    _held = False
    if _pending:
        _pending = False
        raise Preempted()


def held() -> bool:
    return _held


@contextmanager
def training() -> Iterator[None]:
    """Around a training: a hold its callbacks left open (an exception, a NaN-recovered epoch
    that skipped its save) never outlives it; a SIGTERM it held is raised on a normal end."""
    global _held, _pending
    try:
        yield
    except BaseException:
        _held = _pending = False  # the failure in flight is the outcome; the pod stops anyway
        raise
    release()
