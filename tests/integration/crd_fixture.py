"""Session fixture `crd`: the RetrainJob and ModelLine CRDs from crds/, applied once and ready.

Server-side apply with a fixed field manager makes it idempotent across sessions and lets it
take over fields another manager (helm, an older session) set. Import the fixture where it is
needed (``from crd_fixture import crd``), or once in tests/integration/conftest.py.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Protocol

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "retrainer.dev_retrainjobs.yaml"
CRD_NAME = "retrainjobs.retrainer.dev"
LINE_CRD_PATH = ROOT / "crds" / "retrainer.dev_modellines.yaml"
LINE_CRD_NAME = "modellines.retrainer.dev"
# Every CRD the fixture applies, with the plural kubectl must resolve once it is served.
CRDS = ((CRD_PATH, CRD_NAME, "retrainjobs"), (LINE_CRD_PATH, LINE_CRD_NAME, "modellines"))
FIELD_MANAGER = "retrainer-tests"


class Kubectl(Protocol):
    def __call__(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]: ...


def apply_crd(kubectl: Kubectl) -> subprocess.CompletedProcess[str]:
    """Server-side apply the CRDs; the apiserver rejects one here if a CEL rule is too costly."""
    files = [arg for path, _, _ in CRDS for arg in ("-f", str(path))]
    return kubectl(
        "apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}", *files
    )


def wait_until_served(kubectl: Kubectl, timeout: float = 60.0) -> None:
    """Established, and listed by discovery (kubectl resolves `retrainjobs` by discovery)."""
    for _, name, plural in CRDS:
        kubectl("wait", "--for=condition=Established", f"--timeout={int(timeout)}s", f"crd/{name}")
        deadline = time.monotonic() + timeout
        while True:
            probe = kubectl("get", plural, "--all-namespaces", "-o", "name", check=False)
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{plural} not served after {timeout}s: {probe.stderr}")
            time.sleep(0.2)


@pytest.fixture(scope="session")
def crd(kubectl: Kubectl) -> str:
    """The CRD's name, once applied from crds/ and served by the world's apiserver."""
    apply_crd(kubectl)
    wait_until_served(kubectl)
    return CRD_NAME
