"""`make demo` end to end: the world, the chart, the local operator, two trained versions.

The heaviest test (real training twice); marked `demo` so it can be ordered last or deselected
(`-m "integration and not demo"`). It runs the demo module as `make demo` does and then checks
the cluster itself: two RetrainJobs Succeeded and verified, versions 1 and 2, v2 built on v1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from retrainer_world.world import World

pytestmark = [pytest.mark.integration, pytest.mark.demo]

REPO = Path(__file__).resolve().parents[2]
# The demo's own budget is 10 minutes on 2 cores; leave room for a cold Ultralytics import.
LIMIT_SECONDS = 900


@pytest.mark.timeout(LIMIT_SECONDS + 60)
def test_demo_trains_two_verified_versions(world: World) -> None:
    env = {**os.environ, **world.env()}
    proc = subprocess.run(
        [sys.executable, "-m", "retrainer_demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=LIMIT_SECONDS,
    )
    assert proc.returncode == 0, f"demo failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"
    assert "OK: shapes v1 verified" in proc.stdout
    assert "OK: shapes v2 verified" in proc.stdout

    kubectl = str(world.bin_dir / "kubectl")
    listing = subprocess.run(
        [kubectl, "get", "retrainjobs", "-n", "retrainer-demo", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    items = {i["metadata"]["name"]: i["status"] for i in json.loads(listing.stdout)["items"]}
    assert set(items) == {"shapes-initial", "shapes-corrected"}
    for status in items.values():
        verified = {c["type"]: c["status"] for c in status["conditions"]}["Verified"]
        assert status["phase"] == "Succeeded" and verified == "True"
        assert status["verification"]["verified"] is True
    assert items["shapes-initial"]["version"] == 1
    assert items["shapes-corrected"]["version"] == 2
    assert items["shapes-corrected"]["lineage"]["baseVersion"] == 1
    # The model line, shown after each version: its LATEST column moves from 1 to 2.
    assert "the model line after version 1:" in proc.stdout
    assert "the model line after version 2:" in proc.stdout
    after_two = proc.stdout.split("the model line after version 2:", 1)[1]
    header, row = after_two.strip().splitlines()[:2]
    assert header.split()[:3] == ["NAME", "LATEST", "CHAMPION"]
    assert row.split()[:2] == ["shapes", "2"]
    line = subprocess.run(
        [kubectl, "get", "modelline", "shapes", "-n", "retrainer-demo", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    status = json.loads(line.stdout)["status"]
    assert status["latestVerified"] == 2 and status["verifiedVersions"] == "1-2"
    # The numbers mean something: v1 scores clearly above zero on the pinned holdout, and the
    # decision between v1 (the first version, now champion) and v2 is shown.
    first, second = items["shapes-initial"]["evaluation"], items["shapes-corrected"]["evaluation"]
    assert first["decision"] == "NoChampion"
    assert first["challenger"]["metrics"]["mAP50_95"] > 0.1, first
    assert second["decision"] in ("Promoted", "Rejected")
    assert second["champion"]["version"] == 1
    assert second["holdoutSha256"] == first["holdoutSha256"]
    assert f"v2 on the holdout: mAP50_95 {second['challenger']['metrics']['mAP50_95']:.3f}" in (
        proc.stdout
    )
    # The decision comes with its bootstrap interval (spec.promotion.confidence), as recorded.
    interval = second["confidence"]
    assert interval["low"] <= interval["observed"] <= interval["high"], interval
    assert f"v2: 95% interval of the mAP50_95 improvement: [{interval['low']:+.4f}, " in (
        proc.stdout
    )
