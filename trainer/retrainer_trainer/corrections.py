"""Merge human label corrections into the working copy of the dataset (docs/corrections.md).

A corrections folder holds `labels/<split>/*.txt` (a label that replaces or adds), optional
`images/<split>/*` (new images) and an optional `corrections.json` log
`[{image, action: add|replace|delete, author, time}]`. Without a log entry a label file is a
`replace` when the dataset has the image and an `add` when the folder brings it. Problems are
all collected and reported together, naming the corrections file (exit 3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from retrainer_trainer import dataset
from retrainer_trainer.datacache import link_or_copy
from retrainer_trainer.errors import BadInput

__all__ = ["ACTIONS", "Correction", "apply", "read_log"]

ACTIONS = ("add", "replace", "delete")


@dataclass(frozen=True)
class Correction:
    split: str
    image: str  # path below images/<split>/, e.g. "train_0001.png"
    action: str
    author: str = ""
    time: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.split, str(PurePosixPath(self.image).with_suffix(""))

    def as_dict(self) -> dict[str, str]:
        return {
            "image": f"{self.split}/{self.image}",
            "action": self.action,
            "author": self.author,
            "time": self.time,
        }


def _split_image(value: str) -> tuple[str, str] | None:
    parts = PurePosixPath(value).parts
    if parts and parts[0] == "images":
        parts = parts[1:]
    if len(parts) < 2 or parts[0] not in dataset.SPLITS or ".." in parts:
        return None
    return parts[0], str(PurePosixPath(*parts[1:]))


def read_log(path: Path) -> tuple[list[Correction], list[str]]:
    """Parse corrections.json; returns the entries and the problems found."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        return [], [f"corrections.json: not readable JSON: {error}"]
    if not isinstance(raw, list):
        return [], ["corrections.json: must be a list of {image, action, author, time}"]
    entries: list[Correction] = []
    problems: list[str] = []
    for index, item in enumerate(raw):
        at = f"corrections.json: entry {index}"
        if not isinstance(item, dict):
            problems.append(f"{at}: must be an object")
            continue
        where = _split_image(str(item.get("image", "")))
        if where is None:
            problems.append(f"{at}: image {item.get('image')!r} must look like train/name.png")
            continue
        action = item.get("action")
        if action not in ACTIONS:
            problems.append(f"{at}: action {action!r} must be one of {', '.join(ACTIONS)}")
            continue
        entries.append(
            Correction(
                where[0], where[1], action, str(item.get("author", "")), str(item.get("time", ""))
            )
        )
    return entries, problems


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in sorted(dataset.IMAGE_SUFFIXES):
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _plan(source: Path, work: Path) -> tuple[list[Correction], list[str]]:
    log_path = source / "corrections.json"
    entries, problems = read_log(log_path) if log_path.is_file() else ([], [])
    logged = {e.key for e in entries}
    for label in sorted((source / "labels").rglob("*.txt")):
        rel = label.relative_to(source / "labels")
        where = _split_image(("images" / rel).as_posix())
        if where is None:
            problems.append(f"corrections: {label.relative_to(source)} must be in labels/<split>/")
            continue
        split, name = where
        stem = str(PurePosixPath(name).with_suffix(""))
        if (split, stem) in logged:
            continue
        brought = _find_image(source / "images" / split, stem)
        existing = _find_image(work / "images" / split, stem)
        if existing is not None:
            entries.append(Correction(split, existing.name, "replace"))
        elif brought is not None:
            entries.append(
                Correction(split, str(brought.relative_to(source / "images" / split)), "add")
            )
        else:
            problems.append(
                f"corrections: labels/{rel.as_posix()} has no image {split}/{stem}.* in the "
                "dataset nor in the corrections' images/"
            )
    return entries, problems


def apply(
    source: Path, work: Path, names: tuple[str, ...], written: list[str] | None = None
) -> list[Correction]:
    """Apply the corrections in `source` to the working copy `work`; returns what was done
    (and adds the label files it wrote, relative to `work`, to `written`)."""
    written = [] if written is None else written
    entries, problems = _plan(source, work)
    todo: list[tuple[Correction, Path | None, Path | None, str | None]] = []
    for entry in entries:
        split, stem = entry.key
        label = source / "labels" / split / f"{stem}.txt"
        brought = _find_image(source / "images" / split, stem)
        existing = _find_image(work / "images" / split, stem)
        at = f"corrections: {entry.action} {split}/{entry.image}"
        if entry.action == "delete":
            if existing is None:
                problems.append(f"{at}: the dataset has no such image to delete")
            todo.append((entry, existing, None, None))
            continue
        if entry.action == "add" and brought is None and existing is None:
            problems.append(f"{at}: no image images/{split}/{stem}.* in the corrections folder")
        if entry.action == "replace" and existing is None and brought is None:
            problems.append(f"{at}: the dataset has no such image to relabel")
        if not label.is_file():
            problems.append(f"{at}: label file labels/{split}/{stem}.txt is missing")
            continue
        text = label.read_text(encoding="utf-8", errors="replace")
        problems += dataset.check_label_text(
            text, f"corrections: labels/{split}/{stem}.txt", len(names)
        )
        if brought is not None:
            problems += dataset.check_image(brought, f"corrections: images/{split}/{brought.name}")
        todo.append((entry, existing, brought, text))
    if problems:
        raise BadInput(f"corrections: {len(problems)} problem(s) in {source}", problems)
    for entry, existing, brought, new_label in todo:
        split, stem = entry.key
        target_label = work / "labels" / split / f"{stem}.txt"
        # The working copy's files are links to the dataset's: unlink, never write through.
        target_label.unlink(missing_ok=True)
        if entry.action == "delete":
            if existing is not None:
                existing.unlink()
            continue
        if brought is not None:
            if existing is not None:
                existing.unlink()  # a replacement image may change the suffix
            target = work / "images" / split / brought.relative_to(source / "images" / split)
            target.unlink(missing_ok=True)
            link_or_copy(brought, target)
        target_label.parent.mkdir(parents=True, exist_ok=True)
        target_label.write_text(new_label or "", encoding="utf-8")
        written.append(target_label.relative_to(work).as_posix())
    return [entry for entry, *_ in todo]


def applied_document(applied: list[Correction], sha256: str) -> dict[str, Any]:
    """The content of corrections_applied.json."""
    totals = {action: sum(1 for c in applied if c.action == action) for action in ACTIONS}
    return {
        "correctionsSha256": sha256,
        "count": len(applied),
        "totals": totals,
        "applied": [c.as_dict() for c in applied],
    }
