"""Trainers sharing one claim's dataset cache, for the eviction and tree tests (no tests here).

`blob_source` puts a dataset folder into the cache as a fetch does (each file a blob named by
its sha256) and returns it as the Source an s3:// input resolves to. Run as a script, this file
is a second trainer in its own process: it prepares its dataset through the real
`preparation.prepare_cached` (lease, tree hold, eviction), prints its tree, and then either
reads every file of that tree each time it is told to (a trainer still training), or is
killed (SIGKILL, like an OOM kill) with its lease and tree left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from retrainer_trainer import config, inputs, preparation
from retrainer_trainer.datacache import Cache
from retrainer_trainer.fetch import Source, SourceFile

BUCKET = "bucket"


def blob_source(cache: Cache, folder: Path, prefix: str) -> Source:
    """`folder` committed into the cache blob by blob, as fetch.py leaves an s3:// folder (a
    file whose blob is cached already is taken from the cache, not fetched again)."""
    files: dict[str, SourceFile] = {}
    key_ids: dict[str, str] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        data = path.read_bytes()
        key_id = cache.key_id(BUCKET, f"{prefix}/{rel}", '"etag"', len(data))
        entry = cache.lookup(key_id)
        if entry is None:  # fetched: a new blob (a new inode)
            part = cache.tmp / f"{key_id}.{os.getpid()}.part"
            part.write_bytes(data)
            entry = cache.commit(part, key_id, hashlib.sha256(data).hexdigest(), len(data))
        files[rel] = SourceFile(str(entry.path), entry.sha256, entry.size)
        key_ids[rel] = key_id
    uri = f"s3://{BUCKET}/{prefix}"
    return Source(uri=uri, files=files, bucket=BUCKET, prefix=prefix, key_ids=key_ids)


def trainer_config(claim: Path, prefix: str, version: int) -> config.Config:
    raw = {
        "model": "shapes",
        "baseModel": {"architecture": "yolo11n.yaml"},
        "dataset": {"uri": f"s3://{BUCKET}/{prefix}"},
    }
    return config.Config(
        spec=config.parse_spec(raw),
        version=version,
        storage_root=claim,
        workdir=claim.parent / f"work-{prefix}-{version}",
    )


def prepare(
    claim: Path, folder: Path, prefix: str, max_bytes: int, version: int = 1
) -> tuple[Cache, preparation.Prepared, object]:
    """One trainer's dataset step, as pipeline._inputs runs it: fetched (here: committed),
    prepared, leased, then the cache brought under `max_bytes`."""
    cfg = trainer_config(claim, prefix, version)
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    cache = Cache(claim, max_bytes)

    def resolve() -> inputs.Inputs:
        return inputs.Inputs(
            dataset=blob_source(cache, folder, prefix),
            corrections=None,
            base=inputs.BaseModel("yolo11n.yaml", "yolo11n.yaml"),
        )

    _, prep, evicted = preparation.prepare_cached(cfg, cache, resolve)
    return cache, prep, evicted


def read_tree(tree: Path) -> list[str]:
    """Every file of a working tree read through its links; the ones that cannot be read."""
    broken = []
    for path in sorted(tree.rglob("*")):
        if path.is_dir():
            continue
        try:
            path.read_bytes()
        except OSError as error:
            broken.append(f"{path.relative_to(tree)}: {error.strerror}")
    return broken


def _main(mode: str, claim: str, folder: str, prefix: str, control: str) -> None:
    _, prep, _ = prepare(Path(claim), Path(folder), prefix, max_bytes=10**12)
    print(json.dumps({"tree": str(prep.data_yaml.parent)}), flush=True)
    if mode == "killed":
        os.kill(os.getpid(), signal.SIGKILL)  # the fault: a trainer dies with its lease
    stop = Path(control) / "stop"
    while not stop.exists():  # "training": read the tree each time the test asks
        ask = Path(control) / "read"
        if ask.exists():
            ask.unlink()
            print(json.dumps({"broken": read_tree(prep.data_yaml.parent)}), flush=True)
        time.sleep(0.02)


if __name__ == "__main__":
    _main(*sys.argv[1:6])
