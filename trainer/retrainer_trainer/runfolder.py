"""What an existing run folder of version N may be reused for, judged by what was recorded.

A rerun of version N finds the run folder an earlier pod left on the claim. Its weights are
reused only when they are the bytes recorded when they were written: `record` writes
`weights.json` (sha256 and size of last.pt and best.pt) after every checkpoint Ultralytics
saves and again once training has finished; `assess` compares the files with it. A version
stored before records existed is judged by its manifest or metadata file instead.

Nothing here deletes. Content proven wrong (it does not match its record, or, with no record,
its structure is not a checkpoint) is moved aside to `retrain_vN.unreadable-<time>` and the
version trains again; content that merely cannot be read right now (EIO, a MemoryError, a
torch or Ultralytics that cannot load it) is an infrastructure error the Job retries.

Ultralytics' final phase rewrites both files in place (it strips the optimizer), so a pod
stopped there would leave weights that match no record. The save that ends the training loop
is therefore sealed: recorded as the last one and copied to `final-save/`, from which `assess`
puts the recorded bytes back; the run is then finished from them instead of trained again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from retrainer_contract import documents, integrity, layout

from retrainer_trainer import checkpoints, logs, store
from retrainer_trainer.errors import TrainerError

__all__ = [
    "FINISHED",
    "NONE",
    "RECORD",
    "RESUMABLE",
    "Digest",
    "Plan",
    "assess",
    "digest",
    "move_aside",
    "read_record",
    "record",
    "record_finished",
    "seal",
]

# The record of the weights, beside them in the run folder. Only the trainer reads it, so it
# is the trainer's name, not the contract's.
RECORD = "weights.json"
BEST, LAST = "best.pt", "last.pt"
# The sealed final save's copies (kept until the finished run is recorded).
FINAL_SAVE = "final-save"
NONE = "none"
RESUMABLE = checkpoints.RESUMABLE
FINISHED = checkpoints.FINISHED


class Digest(NamedTuple):
    sha256: str
    size: int


@dataclass(frozen=True)
class Record:
    """weights.json: what the weights were when last written, and whether training finished."""

    finished: bool
    files: dict[str, Digest]
    sealed: bool = False  # the save that ended the training loop; its copies are in final-save/


@dataclass(frozen=True)
class Plan:
    """How to go on with the run folder: train anew, resume, or reuse a finished run.

    For a finished run, `best` is what best.pt (`file`) must hash to (recorded in
    `recorded_in`), and `actual` what it hashes to now ("" when it matches, "missing" when it
    is gone). `final_phase` says every epoch was trained but Ultralytics' final phase (the
    optimizer stripped from both files) was not recorded done.
    """

    state: str
    best: Digest | None = None
    actual: str = ""
    recorded_in: str = ""
    file: str = ""
    final_phase: bool = False


def _record_path(paths: layout.VersionPaths) -> Path:
    return paths.run_dir / RECORD


def digest(path: Path) -> Digest | None:
    """sha256 and size of `path`, None when it is absent; a read error is infrastructure."""
    if not path.is_file():
        return None
    try:
        return Digest(*integrity.sha256_file(path))
    except OSError as error:
        raise TrainerError(
            f"cannot read {path} to compare it with its record ({error}); nothing was moved or "
            "deleted"
        ) from error


def _weights(paths: layout.VersionPaths) -> tuple[tuple[str, Path], ...]:
    return ((BEST, paths.training_run), (LAST, paths.last_checkpoint))


def record(paths: layout.VersionPaths, *, finished: bool, sealed: bool = False) -> None:
    """Record last.pt and best.pt as they are now (called right after Ultralytics wrote them)."""
    files = {name: found for name, path in _weights(paths) if (found := digest(path)) is not None}
    store.atomic_write_json(
        _record_path(paths),
        {
            "finished": finished,
            "sealed": sealed,
            "recordedAt": integrity.now_iso(),
            "files": {name: found._asdict() for name, found in files.items()},
        },
    )


def seal(paths: layout.VersionPaths) -> None:
    """Record the save that ends the training loop and keep a copy of it in final-save/.

    The record comes first: until the copies are complete the files still match it (the final
    phase only starts after this returns), so a half-made copy is never needed."""
    record(paths, finished=False, sealed=True)
    for name, path in _weights(paths):
        if path.is_file():
            store.atomic_copy(path, paths.run_dir / FINAL_SAVE / name)


def record_finished(paths: layout.VersionPaths) -> None:
    """Record the finished run; the sealed copies are of no use any more."""
    record(paths, finished=True)
    kept = paths.run_dir / FINAL_SAVE
    for name in (BEST, LAST):
        (kept / name).unlink(missing_ok=True)
    if kept.is_dir():
        kept.rmdir()


def _parse(raw: dict[str, Any]) -> Record:
    files = raw["files"]
    return Record(
        finished=bool(raw["finished"]),
        files={str(k): Digest(str(v["sha256"]), int(v["size"])) for k, v in files.items()},
        sealed=bool(raw.get("sealed", False)),
    )


def read_record(paths: layout.VersionPaths) -> Record | None:
    """weights.json, or None when there is none (or it is not one: then it proves nothing)."""
    path = _record_path(paths)
    try:
        return _parse(documents.read_json(path))
    except FileNotFoundError:
        return None
    except OSError as error:
        raise TrainerError(f"cannot read the weights record {path}: {error}") from error
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        logs.event("weights.record_unreadable", path=str(path), error=str(error)[:300])
        return None


def _optional_json(path: Path) -> dict[str, Any] | None:
    try:
        return documents.read_json(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise TrainerError(f"cannot read {path}: {error}") from error
    except ValueError:
        return None


def _published(paths: layout.VersionPaths) -> tuple[Digest, str] | None:
    """best.pt's sha256 as a stored version recorded it (manifest, else metadata), if any."""
    manifest = _optional_json(paths.manifest) or {}
    metadata = _optional_json(paths.metadata) or {}
    try:
        for artifact in manifest.get("artifacts", []):
            if artifact.get("name") == layout.TRAINING_RUN:
                return Digest(str(artifact["sha256"]), int(artifact["size"])), layout.MANIFEST
        if "weights" in metadata:
            weights = metadata["weights"]
            return Digest(str(weights["sha256"]), int(weights["size"])), paths.metadata.name
    except (KeyError, TypeError, ValueError, AttributeError):
        pass
    return None


def move_aside(paths: layout.VersionPaths, reason: str) -> Path:
    """Move everything in the run folder but its ownership record into a new sibling folder.

    The owner record stays where it is, so version N never looks unowned, not even for a
    moment; the rest keeps its bytes, for a person to look at.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = paths.run_dir.with_name(f"{paths.run_name}.unreadable-{stamp}")
    suffix = 1
    while aside.exists():
        aside = aside.with_name(f"{paths.run_name}.unreadable-{stamp}-{suffix}")
        suffix += 1
    aside.mkdir(parents=True)
    # The weights first: a pod killed half-way then finds no weights, only older leftovers.
    entries = sorted(paths.run_dir.iterdir(), key=lambda p: p.name != "weights")
    for entry in entries:
        if entry.name != layout.OWNER:
            os.replace(entry, aside / entry.name)
    logs.event("run.moved_aside", run=str(paths.run_dir), to=str(aside), reason=reason)
    return aside


def _finished(paths: layout.VersionPaths, best: Digest | None, recorded_in: str) -> Plan:
    if best is None:  # a finished training that never wrote best.pt: nothing to reuse
        move_aside(paths, f"finished, but {recorded_in} records no best.pt")
        return Plan(NONE)
    now = digest(paths.training_run)
    actual = "" if now == best else ("missing" if now is None else now.sha256)
    return Plan(
        FINISHED, best=best, actual=actual, recorded_in=recorded_in, file=str(paths.training_run)
    )


def _state(last: Path, *, recorded: bool) -> str | None:
    """RESUMABLE/FINISHED from last.pt's content; None when its structure proves it is not a
    checkpoint (only when nothing recorded it: a recorded match means the bytes are right)."""
    try:
        return checkpoints.epoch_state(last)
    except checkpoints.NotACheckpoint as error:
        if not recorded:
            logs.event("weights.not_a_checkpoint", path=str(last), error=str(error)[:300])
            return None
        cause: Exception = error
    except Exception as error:
        # EIO, a MemoryError, a torch or Ultralytics that cannot load what another version
        # wrote: the bytes may well be fine, so this is never evidence against them.
        cause = error
    raise TrainerError(
        f"cannot read {last} ({type(cause).__name__}: {cause}); "
        + ("it matches its record, so " if recorded else "")
        + "nothing was moved or deleted: the Job retries"
    ) from cause


def _restore_sealed(paths: layout.VersionPaths, saved: Record, wrong: list[str]) -> bool:
    """Put the sealed final save back over files the final phase rewrote (True: all back)."""
    kept = paths.run_dir / FINAL_SAVE
    if not saved.sealed or any(digest(kept / name) != saved.files.get(name) for name in wrong):
        return False
    for name, path in _weights(paths):
        if name in wrong:
            store.atomic_copy(kept / name, path)
    logs.event("weights.final_save_restored", run=str(paths.run_dir), files=wrong)
    return True


def _unfinished(paths: layout.VersionPaths, saved: Record) -> Plan:
    """A training recorded at its last saved epoch: resume only from exactly those bytes."""
    wrong = [name for name, path in _weights(paths) if digest(path) != saved.files.get(name)]
    if wrong and not _restore_sealed(paths, saved, wrong):
        move_aside(paths, f"{', '.join(sorted(wrong))} do not match {RECORD}")
        return Plan(NONE)
    # The training loop ended (sealed), or every planned epoch is in last.pt (stopped before
    # the seal existed): only Ultralytics' final phase is left to do.
    if saved.sealed or _state(paths.last_checkpoint, recorded=True) == FINISHED:
        plan = _finished(paths, saved.files.get(BEST), RECORD)
        return replace(plan, final_phase=plan.state == FINISHED)
    return Plan(RESUMABLE)


def _unrecorded(paths: layout.VersionPaths) -> Plan:
    """No record: a run folder from before records, or one trained under DDP (no callbacks)."""
    if not paths.last_checkpoint.is_file():
        move_aside(paths, f"best.pt without last.pt or {RECORD}")
        return Plan(NONE)
    state = _state(paths.last_checkpoint, recorded=False)
    if state is None:
        move_aside(paths, "last.pt is not a checkpoint (truncated?) and nothing recorded it")
        return Plan(NONE)
    if state == FINISHED:  # nothing says what best.pt must be: it cannot be verified
        move_aside(paths, f"a finished run without {RECORD} or a stored version")
        return Plan(NONE)
    logs.event("weights.unrecorded", path=str(paths.last_checkpoint), state=state)
    return Plan(RESUMABLE)


def assess(paths: layout.VersionPaths) -> Plan:
    """Compare the run folder's weights with their record; move aside what is proven wrong."""
    if not paths.last_checkpoint.is_file() and not paths.training_run.is_file():
        return Plan(NONE)
    saved = read_record(paths)
    if saved is not None and saved.finished:
        # A finished run never reads last.pt again: only best.pt must be right.
        return _finished(paths, saved.files.get(BEST), RECORD)
    if saved is None and (published := _published(paths)) is not None:
        return _finished(paths, *published)
    if saved is not None:
        return _unfinished(paths, saved)
    return _unrecorded(paths)
