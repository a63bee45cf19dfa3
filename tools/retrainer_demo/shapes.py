"""A tiny YOLO dataset of simple shapes, and label corrections for it, made on the spot.

Tests, benchmarks and the demo need real data that trains in seconds on a CPU without any
download. Everything here is deterministic by seed: the same call writes the same bytes, so a
dataset sha256 is stable across runs. The generated dataset carries a few deliberately wrong
labels (`noisy`); `write_corrections` writes the human fixes for exactly those, plus one new
labelled image, in the corrections format of docs/corrections.md.

    python -m retrainer_demo.shapes DEST [--seed 0] [--train 16] [--val 8] [--corrections DIR]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

__all__ = [
    "NAMES",
    "Box",
    "generate_dataset",
    "generate_holdout",
    "main",
    "upload_folder",
    "write_corrections",
]

NAMES: tuple[str, ...] = ("circle", "square", "triangle")
BACKGROUND = (235, 235, 235)
COLOURS = ((200, 30, 30), (30, 160, 30), (30, 60, 200))
CORRECTION_TIME = "2026-11-27T09:00:00Z"


@dataclass(frozen=True)
class Box:
    """One labelled shape, in YOLO's normalised centre/size form."""

    cls: int
    x: float
    y: float
    w: float
    h: float

    def line(self) -> str:
        return f"{self.cls} {self.x:.6f} {self.y:.6f} {self.w:.6f} {self.h:.6f}"


def _draw_image(
    rng: random.Random, size: int, classes: Sequence[int] | None = None
) -> tuple[Image.Image, list[Box]]:
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    boxes: list[Box] = []
    for _ in range(rng.randint(1, 2)):
        cls = rng.randrange(len(NAMES)) if classes is None else rng.choice(list(classes))
        side = rng.randint(size // 4, size // 2)
        x0 = rng.randint(0, size - side)
        y0 = rng.randint(0, size - side)
        x1, y1 = x0 + side - 1, y0 + side - 1
        colour = COLOURS[cls]
        if cls == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif cls == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=colour)
        boxes.append(
            Box(cls, (x0 + side / 2) / size, (y0 + side / 2) / size, side / size, side / size)
        )
    return image, boxes


def _write_sample(root: Path, split: str, stem: str, image: Image.Image, boxes: list[Box]) -> None:
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    # PNG without metadata chunks: identical bytes for identical pixels.
    image.save(root / "images" / split / f"{stem}.png", format="PNG", optimize=False)
    text = "".join(f"{box.line()}\n" for box in boxes)
    (root / "labels" / split / f"{stem}.txt").write_text(text, encoding="utf-8")


def _wrong(box: Box) -> Box:
    return Box((box.cls + 1) % len(NAMES), box.x, box.y, box.w, box.h)


def _samples(
    seed: int, split: str, count: int, size: int, classes: Sequence[int] | None = None
) -> list[tuple[str, Image.Image, list[Box]]]:
    rng = random.Random(f"{seed}:{split}")
    return [(f"{split}_{i:04d}", *_draw_image(rng, size, classes)) for i in range(count)]


def generate_dataset(
    dest: str | Path,
    *,
    seed: int = 0,
    train: int = 16,
    val: int = 8,
    size: int = 64,
    noisy: int = 2,
    classes: Sequence[int] | None = None,
) -> Path:
    """Write `dest/{data.yaml,images/{train,val},labels/{train,val}}`; returns `dest`.

    The first `noisy` training images get their first box's class wrong (the mistakes that
    `write_corrections` fixes). `classes`: draw only these class ids (data.yaml still names
    all three), e.g. new data in which one class no longer appears.
    """
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("val", val)):
        samples = _samples(seed, split, count, size, classes)
        for index, (stem, image, boxes) in enumerate(samples):
            if split == "train" and index < noisy:
                boxes = [_wrong(boxes[0]), *boxes[1:]]
            _write_sample(root, split, stem, image, boxes)
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(NAMES))
    # No `path:` key: Ultralytics then resolves train/val beside data.yaml, wherever it lies.
    (root / "data.yaml").write_text(
        f"train: images/train\nval: images/val\nnames:\n{names}\n", encoding="utf-8"
    )
    return root


def generate_holdout(
    dest: str | Path,
    *,
    seed: int = 0,
    count: int = 16,
    size: int = 64,
    classes: Sequence[int] | None = None,
) -> Path:
    """Write a pinned holdout `dest/{data.yaml,images,labels}` (never trained on, no noise).

    Its images come from their own random stream, so none is a dataset or corrections image.
    """
    root = Path(dest)
    samples = _samples(seed, "holdout", count, size, classes)
    for index, (_stem, image, boxes) in enumerate(samples):
        _write_sample(root, "", f"holdout_{index:04d}", image, boxes)
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(NAMES))
    (root / "data.yaml").write_text(f"val: images\nnames:\n{names}\n", encoding="utf-8")
    return root


def write_corrections(
    dest: str | Path,
    *,
    seed: int = 0,
    size: int = 64,
    noisy: int = 2,
    add: int = 1,
    author: str = "reviewer@example.com",
) -> Path:
    """Write the corrections for `generate_dataset(seed=seed, noisy=noisy)` into `dest`.

    `labels/train/<stem>.txt` replaces each wrong label; `add` new images with labels join the
    training split; `corrections.json` records who did what.
    """
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    log: list[dict[str, Any]] = []
    for stem, _image, boxes in _samples(seed, "train", noisy, size):
        (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
        text = "".join(f"{box.line()}\n" for box in boxes)
        (root / "labels" / "train" / f"{stem}.txt").write_text(text, encoding="utf-8")
        log.append(
            {
                "image": f"train/{stem}.png",
                "action": "replace",
                "author": author,
                "time": CORRECTION_TIME,
            }
        )
    rng = random.Random(f"{seed}:corrections")
    for index in range(add):
        image, boxes = _draw_image(rng, size)
        stem = f"added_{index:04d}"
        _write_sample(root, "train", stem, image, boxes)
        log.append(
            {
                "image": f"train/{stem}.png",
                "action": "add",
                "author": author,
                "time": CORRECTION_TIME,
            }
        )
    (root / "corrections.json").write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
    return root


def upload_folder(client: Any, bucket: str, prefix: str, folder: str | Path) -> list[str]:
    """Upload every file under `folder` to `s3://bucket/prefix/...` (bucket made if missing).

    `client` is a `minio.Minio`. Returns the object keys written, sorted.
    """
    root = Path(folder)
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    keys: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = "/".join(filter(None, [prefix.strip("/"), path.relative_to(root).as_posix()]))
        client.fput_object(bucket, key, str(path))
        keys.append(key)
    return keys


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="retrainer_demo.shapes", description=__doc__)
    parser.add_argument("dest", type=Path, help="dataset folder to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=16)
    parser.add_argument("--val", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--noisy", type=int, default=2)
    parser.add_argument("--corrections", type=Path, help="also write corrections here")
    args = parser.parse_args(argv)
    generate_dataset(
        args.dest,
        seed=args.seed,
        train=args.train,
        val=args.val,
        size=args.size,
        noisy=args.noisy,
    )
    print(f"dataset={args.dest}")
    if args.corrections:
        write_corrections(args.corrections, seed=args.seed, size=args.size, noisy=args.noisy)
        print(f"corrections={args.corrections}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
