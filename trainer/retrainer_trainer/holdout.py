"""The pinned holdout: checked, copied into the work dir, hashed, and kept apart from training.

Two versions are comparable only when they are scored on the same bytes, so the holdout has its
own URI (spec.promotion.holdout.uri) and its own sha256, and nothing changes it: a corrections
file that would relabel, replace or add one of its images is refused (HoldoutTouched, exit 3),
naming the corrections file. Images are matched by content, so a renamed copy is caught too.

The holdout folder is a YOLO dataset folder whose data.yaml names the classes (the same, in the
same order, as the training dataset) and the holdout images as `val` (a `test` entry is used
when there is no `val`).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from retrainer_trainer import corrections, dataset
from retrainer_trainer.errors import BadInput, HoldoutTouched

__all__ = ["FIELD", "Holdout", "check_corrections", "load"]

FIELD = "spec.promotion.holdout.uri"


@dataclass(frozen=True)
class Holdout:
    """The working copy Ultralytics validates on, and what identifies the holdout."""

    data_yaml: Path
    sha256: str
    images: int
    by_content: dict[str, str]  # image sha256 -> its path in the holdout folder
    names: tuple[str, ...] = ()


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in dataset.IMAGE_SUFFIXES)


def _folder(root: Path, field: str) -> tuple[Path, tuple[str, ...]]:
    data, names = dataset.read_data_yaml(root, field, "the holdout", "names and val")
    key = "val" if data.get("val") else "test"
    entry = data.get(key)
    if not isinstance(entry, str):
        raise BadInput(f"{field}: data.yaml in {root} must name the holdout images as val")
    folder = dataset.inside(root, root, entry, key, field)
    if not folder.is_dir():
        raise BadInput(f"{field}: data.yaml in {root} must name the holdout images as val")
    return folder, names


def load(root: Path, names: tuple[str, ...], work: Path, field: str = FIELD) -> Holdout:
    """Check the holdout at `root` against the dataset's class `names`; copy it into `work`.
    `field` names the spec field in errors (a regression set is loaded the same way)."""
    images_dir, holdout_names = _folder(root, field)
    if holdout_names != names:
        raise BadInput(
            f"{field}: the holdout's classes {list(holdout_names)} differ from the dataset's "
            f"{list(names)}; both versions must be scored on the same classes"
        )
    if work.exists():
        shutil.rmtree(work)
    problems: list[str] = []
    by_content: dict[str, str] = {}
    for image in _images(images_dir):
        where = f"holdout {image.relative_to(root).as_posix()}"
        data = dataset.read_file(image)
        problems += dataset.check_image_bytes(data, where)
        by_content[hashlib.sha256(data).hexdigest()] = image.relative_to(root).as_posix()
        rel = image.relative_to(images_dir)
        target = work / "images" / "val" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        label = dataset.label_for(image)
        if label.is_file():
            text = label.read_text(encoding="utf-8", errors="replace")
            problems += dataset.check_label_text(text, f"holdout {label.name}", len(names))
            out = (work / "labels" / "val" / rel).with_suffix(".txt")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
    if not by_content:
        problems.append(f"no images in {images_dir}")
    if problems:
        raise BadInput(f"{field}: {len(problems)} problem(s) in {root}", problems)
    data_yaml = dataset.write_data_yaml(work, names, train="images/val")
    return Holdout(data_yaml, dataset.tree_sha256(root), len(by_content), by_content, names)


def _dataset_image(work: Path, split: str, stem: str) -> Path | None:
    for suffix in sorted(dataset.IMAGE_SUFFIXES):
        candidate = work / "images" / split / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def check_corrections(source: Path, work: Path, holdout: Holdout) -> None:
    """Refuse corrections in `source` that would change a holdout image (by content).

    `work` is the dataset's working copy before the corrections are merged: a label file
    there relabels the dataset image of the same split and name.
    """
    problems: list[str] = []

    def touches(image: Path) -> str | None:
        return holdout.by_content.get(hashlib.sha256(dataset.read_file(image)).hexdigest())

    for image in _images(source / "images") if (source / "images").is_dir() else []:
        hit = touches(image)
        if hit:
            where = image.relative_to(source).as_posix()
            problems.append(f"corrections file {where} is holdout image {hit} (same bytes)")
    changed: list[tuple[str, str, str]] = []  # (corrections file, split, stem)
    labels = source / "labels"
    for label in sorted(labels.rglob("*.txt")) if labels.is_dir() else []:
        rel = PurePosixPath(label.relative_to(labels).as_posix())
        if len(rel.parts) >= 2:
            stem = str(PurePosixPath(*rel.parts[1:]).with_suffix(""))
            changed.append((label.relative_to(source).as_posix(), rel.parts[0], stem))
    log = source / "corrections.json"
    if log.is_file():
        entries, _ = corrections.read_log(log)  # its own problems are reported when applied
        changed += [("corrections.json", e.split, e.key[1]) for e in entries]
    for where, split, stem in changed:
        target = _dataset_image(work, split, stem)
        hit = touches(target) if target is not None else None
        if target is not None and hit:
            problems.append(
                f"corrections file {where} changes {target.relative_to(work).as_posix()}, "
                f"which is holdout image {hit} (same bytes)"
            )
    if problems:
        raise HoldoutTouched(
            f"corrections in {source} touch the pinned holdout ({FIELD}): the holdout is never "
            "altered by corrections; remove these files or choose a holdout without them",
            problems,
        )
