"""Dataset preparation at scale, behind a far object store, as ratios in one run.

MinIO on loopback answers too fast to show what a cluster costs, so the trainer reaches it
through a latency proxy (retrainer_world.latency_proxy, 20 ms per request, in a process of its
own). For 2,000
photo-sized JPEGs and for 20,000 small ones (each with its label: 4,001 and 40,001 objects),
the bench prints:

- `ready_over_floor`: the trainer's time from `start` to `dataset.ready` for v1 (an empty
  cache) over the floor, a plain 16-thread download of the same objects through the same
  proxy to local files (no hashing, no validation), measured right before or after it (the
  order alternates by round). Goal <= 1.2.
- `v2_over_v1`: the same time for v2 of the line on the unchanged dataset (a warm cache) over
  v1's. Goal <= 0.05; `v2_fetched_bytes`: goal 0.
- `peak_work_over_dataset`: the most the pod's scratch folder (RETRAINER_WORKDIR) held while
  v1 prepared, over the dataset's size. Goal <= 0.1.

The trainer runs as in the pod (a subprocess with the env contract) and is stopped with
SIGTERM at `dataset.cache` (the cache's bookkeeping after `dataset.ready`, before training).
Each figure is the median over the rounds, each ratio the median of the rounds' own ratios (a
figure is only comparable with its baseline from the same round: the machine is shared), and
v1's time is broken down: up to the listing, listing and fetch (`dataset.fetch.done`'s
seconds), the working tree (`dataset.ready`'s seconds). Figures are printed (`make bench`);
assertions are about correctness (what was fetched), never speed.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from retrainer_contract import layout
from retrainer_world import latency_proxy
from retrainer_world.world import World

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_trainer_support import Claim, run_trainer, spec

DELAY = 0.02
THREADS = 16
BUCKET = "bench-datasets"
# (images, pixels of the generated JPEGs, JPEG quality, rounds): photo-sized (about 145 kB
# each) and small (about 2 kB). Each round measures the floor and v1 on an empty cache (one
# right after the other), then v2 on it again; the medians of the rounds are reported.
CASES = {"2000-photo": (2000, (640, 480), 72, 3), "20000-small": (20000, (64, 64), 75, 3)}


def _jpegs(size: tuple[int, int], quality: int, count: int = 8) -> list[bytes]:
    """A few distinct noisy JPEGs (noise keeps them photo-sized); made unique per object by
    a tail after the end-of-image marker, which decoders ignore."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        smooth = (pixels.astype(np.uint16) + np.roll(pixels, 1, axis=0)) // 2
        buffer = io.BytesIO()
        Image.fromarray(smooth.astype(np.uint8)).save(buffer, "JPEG", quality=quality)
        out.append(buffer.getvalue())
    return out


def upload_dataset(client: Any, prefix: str, images: int, size: tuple[int, int], q: int) -> int:
    """Generate and upload the dataset straight to MinIO (not through the proxy); its bytes."""
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    bases = _jpegs(size, q)
    val = images // 10
    names = "names:\n  0: circle\n  1: square\n  2: triangle\n"
    files: list[tuple[str, bytes]] = [
        ("data.yaml", f"train: images/train\nval: images/val\n{names}".encode())
    ]
    for i in range(images):
        split = "val" if i < val else "train"
        image = bases[i % len(bases)] + secrets.token_bytes(16)
        files.append((f"images/{split}/{i:06d}.jpg", image))
        files.append((f"labels/{split}/{i:06d}.txt", f"{i % 3} 0.5 0.5 0.2 0.3\n".encode()))

    def put(item: tuple[str, bytes]) -> None:
        name, data = item
        client.put_object(BUCKET, f"{prefix}/{name}", io.BytesIO(data), len(data))

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(put, files))
    return sum(len(d) for _, d in files)


def floor_download(endpoint: str, world: World, prefix: str, dest: Path) -> float:
    """A plain parallel download (16 threads) of every object, through the proxy."""
    from retrainer_contract import objectstore

    client = objectstore.minio_client(
        endpoint, world.minio_access_key, world.minio_secret_key, max_connections=THREADS
    )
    started = time.monotonic()
    objects = list(client.list_objects(BUCKET, prefix=f"{prefix}/", recursive=True))

    def get(obj: Any) -> None:  # one request per object, streamed to its file
        target = dest / obj.object_name
        target.parent.mkdir(parents=True, exist_ok=True)
        response = client.get_object(BUCKET, obj.object_name)
        try:
            with open(target, "wb") as out:
                for chunk in response.stream(1024 * 1024):
                    out.write(chunk)
        finally:
            response.close()
            response.release_conn()

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(get, objects))
    return time.monotonic() - started


class DiskPeak:
    """The most bytes a folder held, sampled every 20 ms while a run goes on."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.peak = folder, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            total = 0
            for base, _, names in os.walk(self.folder):
                for name in names:
                    with contextlib.suppress(OSError):  # a file removed meanwhile
                        total += os.lstat(os.path.join(base, name)).st_blocks * 512
            self.peak = max(self.peak, total)

    def __enter__(self) -> DiskPeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def prepare(claim: Claim, model: str, version: int, uri: str, endpoint: str) -> dict[str, Any]:
    """Run the trainer until `dataset.ready`; seconds from `start` to it, and what it said."""
    seen: dict[str, float] = {}

    def after_ready(event: dict[str, Any]) -> bool:
        seen.setdefault(event["event"], time.monotonic())
        return bool(event["event"] == "dataset.cache")  # the cache's bookkeeping is done too

    env = claim.env(spec(model, dataset={"uri": uri}), version)
    env["MLFLOW_S3_ENDPOINT_URL"] = endpoint
    work = Path(env["RETRAINER_WORKDIR"])
    work.mkdir(parents=True, exist_ok=True)
    with DiskPeak(work) as disk:
        run = run_trainer(env, timeout=1800, stop_when=after_ready)
    assert "dataset.ready" in seen, run.explain()
    (fetched,) = run.named("dataset.fetch.done")
    (ready,) = run.named("dataset.ready")
    return {
        "seconds": seen["dataset.ready"] - seen["start"],
        "fetched": fetched,
        "fetch": fetched["seconds"],
        "tree": ready["seconds"],
        "before_fetch": seen["dataset.fetch.start"] - seen["start"],
        "peak": disk.peak,
    }


def cache_bytes(root: Path) -> int:
    blobs = layout.dataset_cache_dir(root) / "blobs"
    return sum(p.stat().st_size for p in blobs.glob("*/*") if "." not in p.name)


@pytest.mark.parametrize("case", list(CASES))
def test_dataset_ready_over_a_parallel_download_floor_and_v2_from_the_cache(
    world: World, tmp_path: Path, case: str
) -> None:
    images, size, quality, rounds = CASES[case]
    prefix = f"{case}-{secrets.token_hex(4)}"
    dataset_bytes = upload_dataset(world.minio_client(), prefix, images, size, quality)
    uri = f"s3://{BUCKET}/{prefix}"
    host, port = world.minio_endpoint.removeprefix("http://").split(":")
    floors: list[float] = []
    v1s: list[dict[str, Any]] = []
    v2s: list[dict[str, Any]] = []
    with latency_proxy.serving(host, int(port), DELAY) as proxy_port:
        endpoint = f"http://127.0.0.1:{proxy_port}"
        for round_ in range(rounds):
            claim = Claim(world, tmp_path / f"claim{round_}", tmp_path / f"work{round_}")
            model = f"bench-data-{claim.token}"
            floor_dir = tmp_path / f"floor{round_}"
            if round_ % 2:  # which one goes first alternates: neither always gets the warmer box
                v1s.append(prepare(claim, model, 1, uri, endpoint))
            floors.append(floor_download(endpoint, world, prefix, floor_dir))
            if not round_ % 2:
                v1s.append(prepare(claim, model, 1, uri, endpoint))
            v2s.append(prepare(claim, model, 2, uri, endpoint))
            shutil.rmtree(floor_dir)
            print(
                f"\ndataset_bench case={case} round={round_ + 1} floor_s={floors[-1]:.2f} "
                f"v1_ready_s={v1s[-1]['seconds']:.2f} "
                f"ready_over_floor={v1s[-1]['seconds'] / floors[-1]:.2f} "
                f"v2_ready_s={v2s[-1]['seconds']:.3f}"
            )

    def med(runs: list[dict[str, Any]], key: str) -> float:
        return statistics.median(float(r[key]) for r in runs)

    over_floor = [v1["seconds"] / floor for v1, floor in zip(v1s, floors, strict=True)]
    v2_over_v1 = [v2["seconds"] / v1["seconds"] for v1, v2 in zip(v1s, v2s, strict=True)]
    ready = med(v1s, "seconds")
    print(
        f"\ndataset_bench case={case} objects={v1s[0]['fetched']['files']} "
        f"dataset_mb={dataset_bytes / 1e6:.1f} delay_ms={DELAY * 1000:.0f} rounds={rounds} "
        f"(medians) floor_s={statistics.median(floors):.2f} v1_ready_s={ready:.2f} "
        f"(before_fetch_s={med(v1s, 'before_fetch'):.2f} fetch_s={med(v1s, 'fetch'):.2f} "
        f"tree_s={med(v1s, 'tree'):.2f}) "
        f"v2_ready_s={med(v2s, 'seconds'):.3f} (before_fetch_s={med(v2s, 'before_fetch'):.3f} "
        f"fetch_s={med(v2s, 'fetch'):.3f} tree_s={med(v2s, 'tree'):.3f}) "
        f"ready_over_floor={statistics.median(over_floor):.2f} (goal <= 1.2; per round "
        f"{' '.join(f'{r:.2f}' for r in over_floor)}) "
        f"v2_over_v1={statistics.median(v2_over_v1):.3f} (goal <= 0.05) "
        f"v2_fetched_bytes={max(r['fetched']['fetchedBytes'] for r in v2s)} (goal 0) "
        f"peak_work_over_dataset={max(r['peak'] for r in v1s) / dataset_bytes:.4f} (goal <= 0.1) "
        f"claim_cache_over_dataset={cache_bytes(tmp_path / 'claim0') / dataset_bytes:.2f}"
    )
    assert all(r["fetched"]["fetchedBytes"] == dataset_bytes for r in v1s)
    assert all(r["fetched"]["fetchedBytes"] == 0 for r in v2s)
    assert all(r["fetched"]["cachedFiles"] == images * 2 + 1 for r in v2s)
