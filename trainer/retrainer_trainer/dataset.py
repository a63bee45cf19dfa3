"""Check a YOLO dataset before training, link it into its working tree, hash and count it.

Ultralytics quietly skips broken labels and images; for retraining that hides mistakes, so
every problem is reported up front with its file and line, and the pipeline exits 3 before
spending a GPU minute. The working copy has one fixed layout (images/<split>,
labels/<split>) that corrections are applied to and that Ultralytics trains on; its files are
links to the dataset's, never copies (worktree.py). A file the
system could not read (EIO, ENOSPC, EACCES) says nothing about the dataset: that is
infrastructure (exit 1, retried), never bad input.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from retrainer_contract import integrity

from retrainer_trainer.datacache import link_or_copy
from retrainer_trainer.errors import BadInput, TrainerError

__all__ = [
    "FIELD",
    "IMAGE_SUFFIXES",
    "Layout",
    "check_image",
    "check_label_text",
    "counts",
    "data_yaml_text",
    "inside",
    "load",
    "make_working_copy",
    "read_data_yaml",
    "read_file",
    "tally_counts",
    "tree_sha256",
    "unreadable",
    "validate_working_copy",
    "write_data_yaml",
]

IMAGE_SUFFIXES = frozenset({".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})
SPLITS = ("train", "val")
FIELD = "spec.dataset.uri"


class Known(Protocol):
    """What is known of a dataset file before it is read (fetch.SourceFile)."""

    @property
    def path(self) -> str: ...

    @property
    def decodes(self) -> bool | None: ...


@dataclass(frozen=True)
class Layout:
    """A dataset as data.yaml describes it: class names and the image folders per split."""

    root: Path
    names: tuple[str, ...]
    splits: dict[str, tuple[Path, ...]]


def _names(raw: Any, where: str) -> tuple[str, ...]:
    if isinstance(raw, list) and raw and all(isinstance(n, str) for n in raw):
        return tuple(raw)
    if isinstance(raw, dict) and raw:
        try:
            keys = sorted(int(k) for k in raw)
        except (TypeError, ValueError):
            keys = []
        if keys == list(range(len(raw))):
            return tuple(str(raw[k] if k in raw else raw[str(k)]) for k in keys)
    raise BadInput(f"{where}: 'names' must be a list or a {{0: name, 1: name}} map of classes")


def read_data_yaml(
    root: Path, field: str, what: str, holds: str
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """`root/data.yaml` as a mapping, and its class names; BadInput naming `field` (the spec
    field the folder came from) when it is missing, not YAML, not a mapping holding `holds`,
    or without usable names. `what` is the folder, as the not-found message calls it."""
    data_yaml = root / "data.yaml"
    where = f"{field}: data.yaml in {root}"
    if not data_yaml.is_file():
        raise BadInput(f"{field}: data.yaml not found in {root}; {what} needs one")
    try:
        data = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise BadInput(f"{where} is not readable YAML: {error}") from error
    if not isinstance(data, dict):
        raise BadInput(f"{where} must be a mapping with {holds}")
    return data, _names(data.get("names"), where)


def inside(root: Path, base: Path, value: str, key: str, field: str) -> Path:
    """`base / value` when it resolves inside the dataset folder `root`, else BadInput.

    A data.yaml is the user's text: `train: /etc` or `val: ../../other-team` would make the
    trainer list, hash and link files from anywhere the pod can read (and crash on the first
    path it cannot place below the dataset). Symlinks are followed: they must stay inside too.
    """
    real_root = root.resolve()
    resolved = (base / value).resolve()
    if resolved == real_root or resolved.is_relative_to(real_root):
        return root / resolved.relative_to(real_root)
    fix = f"name a folder inside the dataset, relative to data.yaml (e.g. {key}: images/{key})"
    raise BadInput(
        f"{field}: data.yaml in {root} says {key}: {value!r}, which resolves to {resolved}, "
        f"outside the dataset folder; dataset paths must stay inside it: {fix}"
    )


def _entries(value: Any) -> list[str] | None:
    """A split's folders as data.yaml gives them (one string, or a list)."""
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list) or not entries:
        return None
    return [str(e) for e in entries]


def _base(root: Path, data: dict[str, Any]) -> Path:
    """The folder data.yaml's split paths are relative to: its `path:`, inside the dataset."""
    value = data.get("path")
    if not isinstance(value, str) or not value:
        return root
    real_root = root.resolve()
    resolved = (root / value).resolve()
    if resolved != real_root and not resolved.is_relative_to(real_root):
        # Ultralytics-style datasets carry the author's own `path:` (`../datasets/x`): the
        # dataset's root here is where it was fetched, so that `path:` names nothing of it.
        return root
    candidate = root / resolved.relative_to(real_root)
    return candidate if candidate.is_dir() else root


def load(root: Path) -> Layout:
    """Read `root/data.yaml`; every split folder must exist, inside the dataset folder."""
    where = f"data.yaml in {root}"
    data, names = read_data_yaml(root, "dataset", "a YOLO dataset", "train, val and names")
    base = _base(root, data)
    splits: dict[str, tuple[Path, ...]] = {}
    problems = []
    for split in (*SPLITS, "test"):
        entries = _entries(data.get(split))
        if entries is None:
            if split in SPLITS:
                problems.append(f"{where}: '{split}' must name the {split} image folder")
            continue
        folders = tuple(inside(root, base, e, split, FIELD) for e in entries)
        if split not in SPLITS:
            continue  # checked to stay inside; the working copy has no test split
        problems += [f"{where}: {split} folder {f} not found" for f in folders if not f.is_dir()]
        splits[split] = folders
    if problems:
        raise BadInput("dataset: data.yaml does not describe a usable dataset", problems)
    return Layout(root=root, names=names, splits=splits)


def label_for(image: Path) -> Path:
    """Ultralytics' rule: the last `images` folder in the path becomes `labels`, suffix .txt."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def check_label_text(text: str, where: str, classes: int) -> list[str]:
    """Problems in one YOLO label file (detection boxes or segment polygons), by line."""
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        at = f"{where}:{number}"
        if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
            problems.append(f"{at}: expected 'class x y w h', got {len(fields)} fields")
            continue
        try:
            cls = int(fields[0])
        except ValueError:
            problems.append(f"{at}: class id {fields[0]!r} is not an integer")
            continue
        if not 0 <= cls < classes:
            problems.append(
                f"{at}: class id {cls} out of range (data.yaml names has {classes} classes: "
                f"0..{classes - 1})"
            )
        try:
            values = [float(v) for v in fields[1:]]
        except ValueError:
            problems.append(f"{at}: coordinates must be numbers")
            continue
        if any(not 0.0 <= v <= 1.0 for v in values):
            problems.append(f"{at}: coordinates must be normalised to 0..1, got {values}")
        elif len(fields) == 5 and (values[2] <= 0 or values[3] <= 0):
            problems.append(f"{at}: box width and height must be > 0")
    return problems


def unreadable(error: OSError, where: str) -> TrainerError:
    return TrainerError(
        f"dataset: cannot read {where} ({error.strerror or error}, errno {error.errno}): an I/O "
        "problem of the storage, not of the dataset; the Job retries"
    )


def read_file(path: Path) -> bytes:
    """The bytes of one dataset file (the one place the dataset's files are read)."""
    return path.read_bytes()


def check_image(path: Path, where: str) -> list[str]:
    """Problems of one image (it must decode); TrainerError when it cannot even be read.

    The bytes are read first, so decoding sees memory only: whatever PIL then raises is about
    the content. An OSError that carries an errno is the system's, whichever call raised it.
    """
    try:
        return check_image_bytes(read_file(path), where)
    except OSError as error:
        if error.errno is None:
            raise
        raise unreadable(error, where) from error


def check_image_bytes(data: bytes, where: str) -> list[str]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except OSError as error:
        if error.errno is not None:
            raise
        return [f"{where}: not a decodable image ({type(error).__name__}: {error})"]
    except Exception as error:  # PIL raises many types for broken files
        return [f"{where}: not a decodable image ({type(error).__name__}: {error})"]
    return []


def _images(folder: Path) -> Iterable[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _sources(
    layout: Layout, folder: Path, known: Mapping[str, Known]
) -> list[tuple[Any, str, str]]:
    """(where the image is, its path below `folder`, its path below the dataset root) of each
    image in `folder`: from the files `known`, or found on disk."""
    if not known:
        return [
            (image, image.relative_to(folder).as_posix(), image.relative_to(layout.root).as_posix())
            for image in _images(folder)
        ]
    below = folder.relative_to(layout.root).as_posix()
    base = "" if below == "." else f"{below}/"
    return [
        (known[rel].path, rel[len(base) :], rel)
        for rel in sorted(known)
        if rel.startswith(base) and os.path.splitext(rel)[1].lower() in IMAGE_SUFFIXES
    ]


def _label_rel(where: str) -> str:
    """label_for on a POSIX path string (called per image)."""
    head, found, tail = where.rpartition("images/")
    if found and (not head or head.endswith("/")):
        where = f"{head}labels/{tail}"
    return f"{os.path.splitext(where)[0]}.txt"


def _label_source(image: Any, where: str, layout: Layout, known: Mapping[str, Known]) -> Any:
    if not known:
        return label_for(Path(image))
    entry = known.get(_label_rel(where))
    return entry.path if entry is not None else None


LINK_THREADS = 8  # links and label reads are system calls: they overlap in threads
LINK_CHUNK = 128


def _link_one(
    source: tuple[Any, str, str], split: str, dest: Path, layout: Layout, known: Mapping[str, Known]
) -> tuple[list[str], str | None]:
    """Check (unless known to decode) and link one image and its label: problems, label text
    (None: the image has no label, and no label was linked)."""
    image, rel, where = source
    problems: list[str] = []
    entry = known.get(where)
    if entry is None or not entry.decodes:
        try:
            problems += check_image_bytes(read_file(Path(image)), where)
        except OSError as error:
            raise unreadable(error, where) from error
    link_or_copy(image, f"{dest}/images/{split}/{rel}")
    label = _label_source(image, where, layout, known)
    if label is None or not os.path.isfile(label):
        return problems, None
    lwhere = _label_rel(where)
    try:
        text = read_file(Path(label)).decode("utf-8", errors="replace")
    except OSError as error:
        raise unreadable(error, lwhere) from error
    problems += check_label_text(text, lwhere, len(layout.names))
    link_or_copy(label, f"{dest}/labels/{split}/{os.path.splitext(rel)[0]}.txt")
    return problems, text


def make_working_copy(
    layout: Layout,
    dest: Path,
    known: Mapping[str, Known] | None = None,
    tally: dict[str, list[str | None]] | None = None,
    linked: list[str] | None = None,
) -> Path:
    """Link the dataset into `dest/{images,labels}/<split>/` and validate every file there.

    Files are hardlinked (symlinked where the filesystem refuses), never copied. With `known`
    (the dataset's files by their path below its root), the files are taken from there and an
    image known to decode is not decoded again. `tally` gets each split's label texts (None
    for an image without a label), for `tally_counts`; `linked` every file `dest` then holds
    (below it, POSIX), data.yaml included. Problems name the file in the source dataset so the
    user can fix it where it lives.
    """
    if dest.exists():
        shutil.rmtree(dest)
    known = known or {}
    tally = {} if tally is None else tally
    problems: list[str] = []

    def chunk(part: list[tuple[Any, str, str, str]]) -> list[tuple[list[str], str | None]]:
        return [_link_one((i, r, w), split, dest, layout, known) for i, r, w, split in part]

    with ThreadPoolExecutor(max_workers=LINK_THREADS) as pool:
        for split, folders in layout.splits.items():
            items = [(*s, split) for folder in folders for s in _sources(layout, folder, known)]
            chunks = [items[i : i + LINK_CHUNK] for i in range(0, len(items), LINK_CHUNK)]
            texts = tally.setdefault(split, [])
            for part, done in zip(chunks, pool.map(chunk, chunks), strict=True):
                for (_, rel, _, _), (found, text) in zip(part, done, strict=True):
                    problems += found
                    texts.append(text)
                    if linked is not None:
                        linked.append(f"images/{split}/{rel}")
                        if text is not None:
                            linked.append(f"labels/{split}/{os.path.splitext(rel)[0]}.txt")
            if not items:
                problems.append(
                    f"dataset: split {split} has no images in {[str(f) for f in folders]}"
                )
    if problems:
        raise BadInput(f"dataset: {len(problems)} problem(s) in {layout.root}", problems)
    write_data_yaml(dest, layout.names)
    if linked is not None:
        linked.append("data.yaml")
    return dest


def data_yaml_text(names: tuple[str, ...], train: str = "images/train") -> str:
    """The data.yaml of a working copy: no `path:`, so Ultralytics resolves `train` and `val`
    beside the file, wherever the claim is mounted (an absolute `path:` recorded the mount of
    the pod that built a tree, and a pod mounting the claim elsewhere could not train on it)."""
    data = {"train": train, "val": "images/val", "names": dict(enumerate(names))}
    return yaml.safe_dump(data, sort_keys=False)


def write_data_yaml(dest: Path, names: tuple[str, ...], train: str = "images/train") -> Path:
    """`dest/data.yaml` (data_yaml_text), replaced whole: another trainer may be reading it."""
    path = dest / "data.yaml"
    tmp = dest / f".data.yaml.{os.getpid()}.{threading.get_ident()}"
    tmp.write_text(data_yaml_text(names, train), encoding="utf-8")
    os.replace(tmp, path)
    return path


def validate_working_copy(dest: Path, names: tuple[str, ...]) -> None:
    """Re-check every label in the working copy (after corrections were merged in)."""
    problems: list[str] = []
    for label in sorted((dest / "labels").rglob("*.txt")):
        where = label.relative_to(dest).as_posix()
        problems += check_label_text(label.read_text(encoding="utf-8"), where, len(names))
    if problems:
        raise BadInput("dataset after corrections has problems", problems)


def tree_sha256(root: Path) -> str:
    """One sha256 for a folder: over each file's relative path and sha256, sorted."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0" + integrity.sha256_file(path)[0].encode() + b"\n")
    return digest.hexdigest()


def counts(dest: Path, names: tuple[str, ...]) -> dict[str, Any]:
    """Sample and instance counts per split and class of a working copy."""
    tally: dict[str, list[str | None]] = {}
    for split in SPLITS:
        texts = tally.setdefault(split, [])
        for image in _images(dest / "images" / split):
            label = dest / "labels" / split / image.relative_to(dest / "images" / split)
            label = label.with_suffix(".txt")
            texts.append(label.read_text(encoding="utf-8") if label.is_file() else None)
    return tally_counts(tally, names)


def tally_counts(tally: Mapping[str, list[str | None]], names: tuple[str, ...]) -> dict[str, Any]:
    """Sample and instance counts per split and class from each image's label text."""
    result: dict[str, Any] = {}
    for split in SPLITS:
        per_class = {n: {"samples": 0, "instances": 0} for n in names}
        samples = instances = 0
        for text in tally.get(split, []):
            samples += 1
            seen: set[int] = set()
            for line in (text or "").splitlines():
                if line.split():
                    cls = int(line.split()[0])
                    instances += 1
                    per_class[names[cls]]["instances"] += 1
                    seen.add(cls)
            for cls in seen:
                per_class[names[cls]]["samples"] += 1
        result[split] = {"samples": samples, "instances": instances, "classes": per_class}
    return result
