"""Helpers for the trainer's integration tests (no tests here): run `retrainer-train` as a
subprocess with the env contract, exactly as the training pod would, against the world's real
MinIO and MLflow, and read back what it printed and wrote.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from retrainer_world.world import World

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TRAIN = str(REPO / ".venv" / "bin" / "retrainer-train")
TINY = {"epochs": 2, "imgsz": 64, "batch": 8, "extraArgs": {"workers": 0}}


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    termination: dict[str, Any] | None
    events: list[dict[str, Any]] = field(default_factory=list)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == name]

    def explain(self) -> str:
        out, err = self.stdout[-6000:], self.stderr[-4000:]
        return f"rc={self.rc}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"


@dataclass
class Claim:
    """A claim root, a work dir, and the identity of the RetrainJob being run."""

    world: World
    root: Path
    work: Path
    token: str = field(default_factory=lambda: secrets.token_hex(4))

    def env(
        self,
        spec: dict[str, Any],
        version: int,
        *,
        base_version: int | None = None,
        uid: str | None = None,
        **overrides: str,
    ) -> dict[str, str]:
        env = {**os.environ, **self.world.env()}
        env.update(
            {
                "RETRAINER_SPEC": json.dumps(spec),
                "RETRAINER_NAME": f"{spec['model']}-v{version}",
                "RETRAINER_NAMESPACE": "trainer-tests",
                "RETRAINER_UID": uid or f"uid-{self.token}-{version}",
                "RETRAINER_VERSION": str(version),
                "RETRAINER_STORAGE_ROOT": str(self.root),
                "RETRAINER_CLAIM_NAME": "models",
                "RETRAINER_WORKDIR": str(self.work / f"v{version}"),
                "RETRAINER_TERMINATION_MESSAGE_PATH": str(self.work / f"termination-v{version}"),
            }
        )
        if base_version is not None:
            env["RETRAINER_BASE_VERSION"] = str(base_version)
        env.update(overrides)
        return env


def spec(model: str, **fields: Any) -> dict[str, Any]:
    base = {
        "model": model,
        "baseModel": {"architecture": "yolo11n.yaml"},
        "dataset": {"uri": "datasets/shapes"},
        "training": TINY,
    }
    return {**base, **fields}


def _parse(stdout: str) -> list[dict[str, Any]]:
    events = []
    for line in stdout.splitlines():
        if line.startswith('{"ts"'):
            events.append(json.loads(line))
    return events


def _termination(env: dict[str, str]) -> dict[str, Any] | None:
    path = Path(env["RETRAINER_TERMINATION_MESSAGE_PATH"])
    if not path.is_file():
        return None
    raw = path.read_bytes()
    assert len(raw) <= 4096, "the termination message must stay under 4 KB"
    result: dict[str, Any] = json.loads(raw)
    return result


def run_trainer(
    env: dict[str, str],
    *,
    timeout: float = 400,
    stop_when: Callable[[dict[str, Any]], bool] | None = None,
    command: list[str] | None = None,
) -> Run:
    """Run the trainer; with `stop_when`, send SIGTERM once an event matches (preemption).
    `command` replaces `retrainer-train` (a fault test's wrapper around its `main`)."""
    Path(env["RETRAINER_TERMINATION_MESSAGE_PATH"]).unlink(missing_ok=True)
    # stderr goes to a file: a full pipe nobody reads would block the trainer.
    with tempfile.TemporaryFile(mode="w+") as errors:
        proc = subprocess.Popen(
            command or [TRAIN], env=env, stdout=subprocess.PIPE, stderr=errors, text=True
        )
        lines: list[str] = []
        assert proc.stdout is not None
        if stop_when is not None:
            for line in proc.stdout:
                lines.append(line)
                if line.startswith('{"ts"') and stop_when(json.loads(line)):
                    proc.send_signal(signal.SIGTERM)
                    break
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        errors.seek(0)
        err = errors.read()
    stdout = "".join(lines) + out
    return Run(proc.returncode, stdout, err, _termination(env), _parse(stdout))
