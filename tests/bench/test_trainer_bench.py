"""Trainer benchmarks on the local world, as ratios against a baseline in the same run.

- Wall time of `retrainer-train` (validation, corrections, MLflow on MinIO, four locations,
  verification) over plain Ultralytics training (`YOLO(...).train(...)` in a fresh process,
  with the same offline setup) on the same data and arguments. Goal: <= 1.05. Each round
  trains both, one right after the other (which goes first alternates), and the figures are
  the medians over the rounds: the machine is shared, so a baseline is only comparable with
  the run beside it.
- Where the difference goes: the trainer's `phase.seconds` event (wall seconds per pipeline
  step on its main thread, and the MLflow work that overlapped them) next to the baseline's
  own import, training and teardown, and each process's teardown (its last line to its exit).
- Uploads per weight file: the trainer's upload events and the objects in MinIO. Goal: exactly
  one upload of models/retrained_vN.pt and no other .pt object in the run.

Figures are printed (run with `make bench`, i.e. pytest -s); assertions are about correctness
(the upload count), never about speed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from retrainer_contract import documents, layout
from retrainer_demo import shapes
from retrainer_world.world import World

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_trainer_support import TRAIN, Claim, Run, spec

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
ARGS = {"epochs": 3, "imgsz": 64, "batch": 8, "extraArgs": {"workers": 0}}
# Rounds (RETRAINER_TRAINER_ROUNDS): a round on this shared machine varies by about 0.15 in its
# ratio, so the median of 5 is steadier than of 3.
ROUNDS = int(os.environ.get("RETRAINER_TRAINER_ROUNDS", "5"))

# Prints a line once Ultralytics is imported and one once it trained: the bench times them as
# they arrive (the process's start-up and imports, training, then its teardown until exit).
BASELINE = """
import sys
from pathlib import Path
from retrainer_trainer import training
training.prepare(Path(sys.argv[1]))
from ultralytics import YOLO
print('{"baseline": "imported"}', flush=True)
YOLO("yolo11n.yaml").train(data=sys.argv[2], epochs=3, imgsz=64, batch=8, workers=0,
    device="cpu", amp=False, project=sys.argv[3], name="plain", exist_ok=True, seed=0)
print('{"baseline": "trained"}', flush=True)
"""


def timed_process(command: list[str], env: Mapping[str, str]) -> tuple[Run, dict[str, float]]:
    """Run `command`; its stdout JSON lines as events, and when each arrived (seconds after
    the start) by its `event` (or `baseline`) name, `exit` when the process ended."""
    seen: dict[str, float] = {}
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+") as errors:
        started = time.monotonic()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("{"):
                record = json.loads(line)
                name = record.get("event") or record.get("baseline")
                seen[str(name)] = time.monotonic() - started
        rc = proc.wait(timeout=900)
        seen["exit"] = time.monotonic() - started
        errors.seek(0)
        err = errors.read()
    events = [json.loads(line) for line in lines if line.startswith('{"ts"')]
    return Run(rc, "".join(lines), err, None, events), seen


def plain_train(work: Path, data_yaml: Path, project: Path) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    command = [PYTHON, "-c", BASELINE, str(work), str(data_yaml), str(project)]
    run, seen = timed_process(command, env)
    assert run.rc == 0, run.stderr[-3000:]
    return {
        "wall": seen["exit"],
        "import": seen["imported"],
        "train": seen["trained"] - seen["imported"],
        "teardown": seen["exit"] - seen["trained"],
    }


def train_with_trainer(claim: Claim, model: str) -> tuple[Run, dict[str, Any]]:
    body = spec(model, training=ARGS, mlflow={"experiment": model})
    run, seen = timed_process([TRAIN], claim.env(body, 1))
    assert run.rc == 0, run.explain()
    (phases,) = run.named("phase.seconds")
    figures = {
        "wall": seen["exit"],
        "teardown": seen["exit"] - seen["done"],
        "phases": phases,
    }
    return run, figures


def check_one_upload(world: World, claim: Claim, model: str, run: Run) -> dict[str, Any]:
    """The weights went up once, as models/retrained_v1.pt, the run's only .pt object."""
    weights = [u for u in run.named("upload") if u["artifact"].endswith(".pt")]
    manifest = documents.read_json(layout.VersionPaths.for_version(claim.root, model, 1).manifest)
    mlflow_uri = next(a["uri"] for a in manifest["artifacts"] if a["name"] == "mlflow")
    bucket, key = layout.parse_s3_uri(mlflow_uri)
    run_prefix = key.split("/artifacts/")[0] + "/"
    objects = [
        o.object_name
        for o in world.minio_client().list_objects(bucket, prefix=run_prefix, recursive=True)
        if o.object_name.endswith(".pt")
    ]
    assert [u["artifact"] for u in weights] == ["models/retrained_v1.pt"]
    assert objects == [key]
    size = manifest["artifacts"][0]["size"]
    return {
        "weight_uploads": len(weights),
        "bytes_per_weight": sum(u["bytes"] for u in weights) / max(size, 1),
        "pt_objects": len(objects),
    }


def median(values: list[float]) -> float:
    return statistics.median(values)


# The trainer's steps, as its phase.seconds event names them, grouped against the baseline.
BEFORE_TRAINING = ("startup", "inputs", "setup", "preflight", "mlflow")
AFTER_TRAINING = ("store", "upload", "logModel", "evaluate", "register", "verify", "publish")


def test_trainer_wall_time_over_plain_ultralytics_and_one_upload_per_weight_file(
    world: World, tmp_path: Path
) -> None:
    plains: list[dict[str, float]] = []
    ours: list[dict[str, Any]] = []
    uploads: dict[str, Any] = {}
    for round_ in range(ROUNDS):
        claim = Claim(world, tmp_path / f"claim{round_}", tmp_path / f"work{round_}")
        dataset = shapes.generate_dataset(
            claim.root / "datasets" / "shapes", seed=11, train=32, val=8
        )
        # The baseline trains on the same files, with an absolute path as the trainer's copy has.
        data_yaml = tmp_path / f"plain-data{round_}.yaml"
        data_yaml.write_text(
            f"path: {dataset}\ntrain: images/train\nval: images/val\n"
            "names:\n  0: circle\n  1: square\n  2: triangle\n"
        )
        model = f"bench-{claim.token}"
        plain_args = (tmp_path / f"plain-work{round_}", data_yaml, tmp_path / "plain-runs")
        if round_ % 2:  # which one goes first alternates: neither always gets the warmer box
            plains.append(plain_train(*plain_args))
        run, figures = train_with_trainer(claim, model)
        ours.append(figures)
        if not round_ % 2:
            plains.append(plain_train(*plain_args))
        uploads = check_one_upload(world, claim, model, run)
        print(
            f"\ntrainer_bench round={round_ + 1} wall_trainer_s={figures['wall']:.1f} "
            f"wall_plain_s={plains[-1]['wall']:.1f} "
            f"ratio={figures['wall'] / plains[-1]['wall']:.2f}"
        )

    ratios = [o["wall"] / p["wall"] for o, p in zip(ours, plains, strict=True)]
    wall = median([o["wall"] for o in ours])
    plain = median([p["wall"] for p in plains])

    def step(name: str) -> float:
        return median([float(o["phases"].get(name, 0.0)) for o in ours])

    def steps(names: tuple[str, ...]) -> str:
        return " ".join(f"{n}={step(n):.2f}" for n in names if any(n in o["phases"] for o in ours))

    before = median([sum(float(o["phases"].get(n, 0.0)) for n in BEFORE_TRAINING) for o in ours])
    after = median([sum(float(o["phases"].get(n, 0.0)) for n in AFTER_TRAINING) for o in ours])
    background = sorted({k for o in ours for k in o["phases"].get("background", {})})
    overlapped = " ".join(
        f"{k}={median([float(o['phases']['background'].get(k, 0.0)) for o in ours]):.2f}"
        for k in background
    )
    print(
        f"\ntrainer_bench rounds={ROUNDS} (medians) wall_trainer_s={wall:.1f} "
        f"wall_plain_s={plain:.1f} ratio={median(ratios):.2f} (goal <= 1.05; per round "
        f"{' '.join(f'{r:.2f}' for r in ratios)}) fixed_overhead_s={wall - plain:.1f} "
        f"weight_uploads={uploads['weight_uploads']} "
        f"bytes_uploaded_per_weight_file={uploads['bytes_per_weight']:.2f} (goal 1.00) "
        f"pt_objects_in_run={uploads['pt_objects']}"
        f"\ntrainer_bench breakdown (median s, trainer vs plain): "
        f"before_training={before:.2f} vs import={median([p['import'] for p in plains]):.2f} "
        f"[{steps(BEFORE_TRAINING)}] | "
        f"training={step('train'):.2f} vs {median([p['train'] for p in plains]):.2f} | "
        f"after_training={after:.2f} vs 0 [{steps(AFTER_TRAINING)}] | "
        f"teardown={median([o['teardown'] for o in ours]):.2f} "
        f"vs {median([p['teardown'] for p in plains]):.2f} | "
        f"overlapped in the background: {overlapped or 'none'}"
    )
