"""The integration tier: every module here runs against the real local world and says so with
`pytestmark = pytest.mark.integration`; a module that forgets is a collection error, so
`-m integration` can never silently drop it. Also offers `helm` and `minio` fixtures and the
shared `crd` fixture (tests/integration/crd_fixture.py).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from crd_fixture import crd  # noqa: F401  (re-exported: a session fixture for every module)
from retrainer_world.world import World

HERE = Path(__file__).resolve().parent

Helm = Callable[..., subprocess.CompletedProcess[str]]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = sorted(
        {
            str(item.path.relative_to(HERE))
            for item in items
            if HERE in item.path.parents and item.get_closest_marker("integration") is None
        }
    )
    if unmarked:
        raise pytest.UsageError(
            f"integration test modules without `pytestmark = pytest.mark.integration`: "
            f"{', '.join(unmarked)}"
        )


@pytest.fixture
def helm(world: World, tmp_path: Path) -> Helm:
    """`helm(*args, check=True)` against the world, with throwaway helm config/cache folders."""
    env = {**os.environ, **world.env()}
    for kind in ("CACHE", "CONFIG", "DATA"):
        env[f"HELM_{kind}_HOME"] = str(tmp_path / f"helm-{kind.lower()}")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(world.bin_dir / "helm"), f"--kubeconfig={world.kubeconfig}", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    return run


@pytest.fixture
def minio(world: World) -> Any:
    """A `minio.Minio` client for the world's MinIO."""
    return world.minio_client()
