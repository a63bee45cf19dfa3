#!/usr/bin/env bash
# Proves GPU training through the real trainer on a machine with an NVIDIA GPU and no network
# (the project's lent H100/H200 box): installs the carried wheels the box lacks, generates a
# shapes dataset, trains version 1 from yolo11n.yaml and version 2 from `latest` with
# corrections, both with spec.resources.gpus=1, against a local MLflow (sqlite + file artifacts,
# since that box has no MinIO), and copies manifests and logs to $OUT.
#
#   tools/gpu-check.sh WHEELS_DIR OUT_DIR
# Wheels: `pip download` of what requirements/trainer.lock adds to the box's image (see
# docs/gpu.md). Nothing in the test suite needs this script.
set -uo pipefail
wheels="${1:?wheels dir}"
out="${2:?output dir}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
mkdir -p "$out"
exec > >(tee "$out/gpu-check.log") 2>&1

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 --version

echo "== installing carried wheels"
python3 -m pip install -q --no-deps --no-index --target "$work/site" "$wheels"/*.whl || exit 1
export PYTHONPATH="$work/site:$repo/operator:$repo/trainer:$repo/tools"
python3 -c "import torch, ultralytics, mlflow; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0)); print('ultralytics', ultralytics.__version__, 'mlflow', mlflow.__version__)" || exit 1

claim="$work/claim"
mkdir -p "$claim/datasets"
python3 -m retrainer_demo.shapes "$claim/datasets/shapes" --train 256 --val 64 --size 320 \
  --corrections "$claim/corrections/batch-1" || exit 1

export RETRAINER_STORAGE_ROOT="$claim" RETRAINER_CLAIM_NAME=models RETRAINER_NAMESPACE=gpu-check
export MLFLOW_TRACKING_URI="sqlite:///$work/mlflow.db"

train() { # version spec_json
  local version="$1" spec="$2" started ended rc
  echo "== training v$version on the GPU"
  started=$(date +%s.%N)
  RETRAINER_VERSION="$version" RETRAINER_NAME="gpu-v$version" RETRAINER_UID="gpu-check-$version" \
    RETRAINER_BASE_VERSION="$3" RETRAINER_SPEC="$spec" RETRAINER_WORKDIR="$work/scratch-$version" \
    RETRAINER_TERMINATION_MESSAGE_PATH="$out/termination-v$version.json" \
    python3 -m retrainer_trainer >"$out/trainer-v$version.log" 2>&1
  rc=$?
  ended=$(date +%s.%N)
  echo "v$version exit=$rc seconds=$(python3 -c "print(round($ended-$started,1))")"
  grep -E "CUDA|GPU|device" "$out/trainer-v$version.log" | head -5
  cp "$claim/shapes/runs/train/retrain_v$version/manifest.json" "$out/manifest-v$version.json" 2>/dev/null
  return $rc
}
training='"training":{"epochs":5,"imgsz":320,"batch":32,"patience":50,"seed":0},"resources":{"gpus":1}'
train 1 "{\"model\":\"shapes\",\"baseModel\":{\"architecture\":\"yolo11n.yaml\"},\"dataset\":{\"uri\":\"datasets/shapes\"},$training}" "" || exit 1
train 2 "{\"model\":\"shapes\",\"baseModel\":{\"version\":\"latest\"},\"dataset\":{\"uri\":\"datasets/shapes\"},\"corrections\":{\"uri\":\"corrections/batch-1\"},$training}" 1 || exit 1

echo "== result"
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for v in (1, 2):
    m = json.loads((out / f"manifest-v{v}.json").read_text())
    checks = m["verification"]["checks"]
    print(f"v{v}: verified={m['verification']['verified']} metrics={m['metrics']} "
          f"checks={[(c['name'], c['ok']) for c in checks]} lineage.baseVersion={m['lineage'].get('baseVersion')}")
    assert m["verification"]["verified"], f"v{v} not verified"
print("GPU CHECK PASSED")
PY
