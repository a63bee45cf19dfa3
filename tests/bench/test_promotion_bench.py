"""What the promotion gates cost: the trainer's scoring of both versions on the holdout and two
regression sets, bootstrap included, over plain Ultralytics validation (`YOLO(w).val(...)`) of
both versions on the same three sets, in one process, median of 3 rounds. Goal: <= 1.15.

Both sides validate with the same settings (image size, thresholds, batch, plots); ours also
keeps the per-image matches and draws 1,000 paired resamples. Figures are printed (`make
bench`); the only assertions are about correctness (the interval is an interval).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from retrainer_contract import gates
from retrainer_demo import shapes

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
IMGSZ, ROUNDS, RESAMPLES = 64, 3, 1000

TRAIN = """
import sys
from pathlib import Path
from retrainer_trainer import training
training.prepare(Path(sys.argv[1]))
from ultralytics import YOLO
YOLO("yolo11n.yaml").train(data=sys.argv[2], epochs=12, imgsz=64, batch=16, workers=0,
    device="cpu", amp=False, project=sys.argv[3], name="w", exist_ok=True, seed=int(sys.argv[4]),
    mosaic=0.0, optimizer="AdamW", lr0=0.003, warmup_epochs=1, plots=False)
"""


def trained(work: Path, data_yaml: Path, seed: int) -> Path:
    project = work / f"runs-{seed}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    subprocess.run(
        [PYTHON, "-c", TRAIN, str(work / f"setup-{seed}"), str(data_yaml), str(project), str(seed)],
        env=env, check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    return project / "w" / "weights" / "best.pt"


def a_set(folder: Path, seed: int) -> Path:
    shapes.generate_holdout(folder, seed=seed, count=48, size=IMGSZ)
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(shapes.NAMES))
    data_yaml = folder / "data.yaml"
    data_yaml.write_text(f"path: {folder}\ntrain: images\nval: images\nnames:\n{names}")
    return data_yaml


def test_gated_scoring_over_plain_validation_of_both_versions_on_three_sets(
    tmp_path: Path,
) -> None:
    data = shapes.generate_dataset(tmp_path / "data", seed=1, train=128, val=16, size=IMGSZ)
    versions = [trained(tmp_path, data / "data.yaml", seed) for seed in (0, 1)]
    sets = [a_set(tmp_path / f"set-{i}", seed=20 + i) for i in range(3)]  # holdout + 2 sets

    from retrainer_trainer import bootstrap, training

    training.prepare(tmp_path / "bench-setup")
    from ultralytics import YOLO

    def plain() -> None:
        for data_yaml in sets:
            for weights in versions:
                YOLO(str(weights)).val(
                    data=str(data_yaml), split="val", imgsz=IMGSZ, conf=0.001, iou=0.7, batch=8,
                    device="cpu", plots=True, project=str(tmp_path / "plain"), name="v",
                    exist_ok=True, verbose=False,
                )  # fmt: skip

    found: list[gates.Interval] = []
    kept: list[tuple[bootstrap.Matches, bootstrap.Matches]] = []

    def gated() -> None:
        scored = [
            [
                training.validate(
                    weights=weights,
                    data_yaml=data_yaml,
                    imgsz=IMGSZ,
                    conf=0.001,
                    iou=0.7,
                    device="cpu",
                    save_dir=tmp_path / "ours" / f"{i}-{j}",
                )
                for j, weights in enumerate(versions)
            ]
            for i, data_yaml in enumerate(sets)
        ]
        holdout = scored[0]
        kept.append((holdout[0].matches, holdout[1].matches))
        found.append(
            bootstrap.paired_interval(
                holdout[0].matches, holdout[1].matches, "mAP50_95", 0.95, RESAMPLES, 0
            )
        )

    plain()  # warm-up: first-use costs (model fusing, font checks) are nobody's
    ratios, plains, ours = [], [], []
    for _ in range(ROUNDS):
        started = time.monotonic()
        plain()
        base = time.monotonic() - started
        started = time.monotonic()
        gated()
        mine = time.monotonic() - started
        plains.append(base)
        ours.append(mine)
        ratios.append(mine / base)

    interval = found[-1]
    assert interval.low <= interval.observed <= interval.high, interval
    assert len({(i.low, i.high) for i in found}) == 1  # the same seed, the same interval
    ours_m, theirs_m = kept[-1]
    started = time.monotonic()
    bootstrap.paired_interval(ours_m, theirs_m, "mAP50_95", 0.95, RESAMPLES, 0)
    alone = time.monotonic() - started
    print(
        f"\npromotion gates: scoring 2 versions x 3 sets (48 images each) + {RESAMPLES} paired "
        f"resamples over plain validation of the same: median ratio "
        f"{statistics.median(ratios):.3f} (goal <= 1.15); plain {statistics.median(plains):.2f} s, "
        f"gated {statistics.median(ours):.2f} s, of which the bootstrap {alone:.3f} s; rounds "
        f"{[round(r, 3) for r in ratios]}; "
        f"interval {interval.to_dict()}",
        file=sys.stderr,
    )
