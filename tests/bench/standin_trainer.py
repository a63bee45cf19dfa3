"""A fast stand-in for the trainer image, for the operator benchmark only.

It honours the trainer's contract (docs/contract.md) without training: writes a small
"weights" file to the four claim locations and to MinIO, checks them, writes the manifest as
the termination message and exits 0, in well under a second. The world maps the image
`retrainer-bench-trainer` to this script (tools/retrainer_world/kubelet/images.yaml).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path

from retrainer_contract import integrity, layout, objectstore


def main() -> int:
    env = os.environ
    spec = json.loads(env["RETRAINER_SPEC"])
    version, uid = int(env["RETRAINER_VERSION"]), env["RETRAINER_UID"]
    claim = env["RETRAINER_CLAIM_NAME"]
    paths = layout.VersionPaths.for_version(env["RETRAINER_STORAGE_ROOT"], spec["model"], version)
    weights = f"stand-in weights {uid} v{version}\n".encode() * 64
    artifacts: list[dict[str, object]] = []
    for name, path in paths.claim_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(weights)
        digest, size = integrity.sha256_file(path)
        artifacts.append(
            {"name": name, "uri": paths.uri(claim, path), "sha256": digest, "size": size}
        )
    client = objectstore.minio_client()
    bucket = "bench"
    if not client.bucket_exists(bucket):
        with contextlib.suppress(Exception):  # another stand-in made it first
            client.make_bucket(bucket)
    key = f"{uid}/artifacts/models/retrained_v{version}.pt"
    client.put_object(bucket, key, io.BytesIO(weights), len(weights))
    digest, size = integrity.sha256_stream([weights])
    artifacts.append(
        {"name": "mlflow", "uri": layout.s3_uri(bucket, key), "sha256": digest, "size": size}
    )
    checks = integrity.check_artifacts(
        artifacts, storage_root=env["RETRAINER_STORAGE_ROOT"], client=client, by="trainer"
    )
    manifest = {
        "version": version,
        "metrics": {"precision": 0.5, "recall": 0.5, "mAP50": 0.5, "mAP50_95": 0.5},
        "artifacts": artifacts,
        "verification": {"verified": all(c["ok"] for c in checks), "checks": checks},
        "mlflow": {"experimentId": "0", "runId": f"standin-{uid[:8]}"},
        "lineage": {"baseModel": "stand-in", "trainSamples": 0, "valSamples": 0},
    }
    Path(env["RETRAINER_TERMINATION_MESSAGE_PATH"]).write_text(
        json.dumps(manifest, separators=(",", ":")), encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
