"""Fixtures for tests that need the local world (a real apiserver, controllers, pod runner,
MinIO and MLflow). None is autouse: unit tests never touch a cluster.

- `world` (session): reuses a healthy running world, else starts one; a world started here is
  stopped when the last test session using it ends (RETRAINER_KEEP_WORLD=1 keeps it).
  If it cannot start, the tests using it fail (never skip).
- `kube` (session): a `kubernetes.client.ApiClient` for the world's admin kubeconfig.
- `namespace` (per test): a fresh namespace holding Secret `minio-credentials`
  (keys accessKey, secretKey); deleted afterwards.
- `kubectl` (session): `kubectl(*args, check=True, input=None) -> CompletedProcess[str]`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from typing import Protocol

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from namespace_support import wait_for_namespace_defaults
from retrainer_world import procs, sessions
from retrainer_world.world import World, WorldError

NAMESPACE_LABEL = "retrainer.dev/test"
CREDENTIALS_SECRET = "minio-credentials"


class KubectlError(subprocess.CalledProcessError):
    """A kubectl call that failed, with its stderr in the message."""

    def __str__(self) -> str:
        return f"{' '.join(map(str, self.cmd))} exited {self.returncode}: {self.stderr.strip()}"


class Kubectl(Protocol):
    def __call__(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture(scope="session")
def world() -> Iterator[World]:
    with contextlib.ExitStack() as stack:
        try:
            w = stack.enter_context(sessions.use())
        except (WorldError, procs.ComponentError) as exc:
            pytest.fail(f"the local world could not start: {exc}", pytrace=False)
        yield w


@pytest.fixture(scope="session")
def kube(world: World) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(world.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def kubectl(world: World) -> Kubectl:
    env = {**os.environ, **world.env()}
    binary = str(world.bin_dir / "kubectl")

    def run(
        *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [binary, f"--kubeconfig={world.kubeconfig}", *args]
        proc = subprocess.run(
            cmd, input=input, capture_output=True, text=True, env=env, timeout=120
        )
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    return run


def _namespace_name(test_name: str) -> str:
    # Readable in `kubectl get ns`, unique, and a valid DNS label (<= 63 chars).
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{stem}-{secrets.token_hex(3)}" if stem else f"t-{secrets.token_hex(4)}"


@pytest.fixture
def namespace(
    request: pytest.FixtureRequest, world: World, kube: client.ApiClient
) -> Iterator[str]:
    core = client.CoreV1Api(kube)
    name = _namespace_name(request.node.name.removeprefix("test_"))
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={NAMESPACE_LABEL: "true"})
        )
    )
    try:
        core.create_namespaced_secret(
            name,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=CREDENTIALS_SECRET),
                string_data={
                    "accessKey": world.minio_access_key,
                    "secretKey": world.minio_secret_key,
                },
            ),
        )
        wait_for_namespace_defaults(core, name)
        yield name
    finally:
        # Not waited for: the namespace controller finishes the deletion in the background.
        with contextlib.suppress(ApiException):
            core.delete_namespace(name, propagation_policy="Background")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the `make demo` end-to-end test last: it is the slowest and reuses everything."""
    items.sort(key=lambda item: item.get_closest_marker("demo") is not None)
