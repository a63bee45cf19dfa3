"""Trainer benchmarks on the local world, as ratios against a baseline in the same run.

- Wall time of `retrainer-train` (validation, corrections, MLflow on MinIO, four locations,
  verification) over plain Ultralytics training (`YOLO(...).train(...)` in a fresh process,
  with the same offline setup) on the same data and arguments. Goal: <= 1.05 on real data; on
  this tiny dataset the fixed costs (importing MLflow, uploading, hashing) dominate, so the
  figure printed here is an upper bound.
- Uploads per weight file: the trainer's upload events and the objects in MinIO. Goal: exactly
  one upload of models/retrained_vN.pt and no other .pt object in the run.

Figures are printed (run with `make bench`, i.e. pytest -s); assertions are about correctness
(the upload count), never about speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from retrainer_contract import documents, layout
from retrainer_demo import shapes
from retrainer_world.world import World

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_trainer_support import Claim, run_trainer, spec

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
ARGS = {"epochs": 3, "imgsz": 64, "batch": 8, "extraArgs": {"workers": 0}}

BASELINE = """
import sys
from pathlib import Path
from retrainer_trainer import training
training.prepare(Path(sys.argv[1]))
from ultralytics import YOLO
YOLO("yolo11n.yaml").train(data=sys.argv[2], epochs=3, imgsz=64, batch=8, workers=0,
    device="cpu", amp=False, project=sys.argv[3], name="plain", exist_ok=True, seed=0)
"""


def plain_train(work: Path, data_yaml: Path, project: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    started = time.monotonic()
    subprocess.run(
        [PYTHON, "-c", BASELINE, str(work), str(data_yaml), str(project)],
        env=env, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return time.monotonic() - started


def test_trainer_wall_time_over_plain_ultralytics_and_one_upload_per_weight_file(
    world: World, tmp_path: Path
) -> None:
    claim = Claim(world, tmp_path / "claim", tmp_path / "work")
    dataset = shapes.generate_dataset(claim.root / "datasets" / "shapes", seed=11, train=32, val=8)
    # The baseline trains on the same files, with an absolute path as the trainer's copy has.
    data_yaml = tmp_path / "plain-data.yaml"
    data_yaml.write_text(
        f"path: {dataset}\ntrain: images/train\nval: images/val\n"
        "names:\n  0: circle\n  1: square\n  2: triangle\n"
    )
    baseline = plain_train(tmp_path / "plain-work", data_yaml, tmp_path / "plain-runs")

    model = f"bench-{claim.token}"
    body = spec(model, training=ARGS, mlflow={"experiment": f"bench-{claim.token}"})
    started = time.monotonic()
    result = run_trainer(claim.env(body, 1), timeout=900)
    ours = time.monotonic() - started
    assert result.rc == 0, result.explain()

    weights = [u for u in result.named("upload") if u["artifact"].endswith(".pt")]
    manifest = documents.read_json(layout.VersionPaths.for_version(claim.root, model, 1).manifest)
    mlflow_uri = next(a["uri"] for a in manifest["artifacts"] if a["name"] == "mlflow")
    bucket, key = layout.parse_s3_uri(mlflow_uri)
    run_prefix = key.split("/artifacts/")[0] + "/"
    objects = [
        o.object_name
        for o in world.minio_client().list_objects(bucket, prefix=run_prefix, recursive=True)
        if o.object_name.endswith(".pt")
    ]
    size = manifest["artifacts"][0]["size"]
    uploaded = sum(u["bytes"] for u in weights)
    print(
        f"\ntrainer_bench wall_trainer_s={ours:.1f} wall_plain_s={baseline:.1f} "
        f"ratio={ours / baseline:.2f} (goal <= 1.05) fixed_overhead_s={ours - baseline:.1f} "
        f"weight_uploads={len(weights)} "
        f"bytes_uploaded_per_weight_file={uploaded / max(size, 1):.2f} (goal 1.00) "
        f"pt_objects_in_run={len(objects)}"
    )
    assert [u["artifact"] for u in weights] == ["models/retrained_v1.pt"]
    assert objects == [key]
