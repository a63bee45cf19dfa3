"""`make demo` can be run again in any state the last one left.

The demo's first step (`retrainer_demo.leftovers.reset`) runs here against the real world, for
a namespace of the test's own instead of `retrainer-demo` (the whole demo, twice, is far too
slow, and someone's demo may be running): a namespace whose ModelLine still carries Retrainer's
finalizer with no operator running goes, and claim folders an earlier demo left on the host go
even when their namespace is long gone (an old v1 there made the next demo's v1 a
VersionConflict).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from retrainer_contract import api
from retrainer_demo import leftovers
from retrainer_world.kubelet.pvprovisioner import claim_folder
from retrainer_world.world import World

pytestmark = pytest.mark.integration

CLAIM = "retrainer-models"
OLD_VERSION = Path("shapes") / "models" / "retrained_v1.pt"


def _gone(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespace(namespace)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def _bound_claim(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": CLAIM},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    deadline = time.monotonic() + 60
    while core.read_namespaced_persistent_volume_claim(CLAIM, namespace).status.phase != "Bound":
        assert time.monotonic() < deadline, "the claim was not bound within 60s"
        time.sleep(0.5)


def _line_with_finalizer(kube: Any, namespace: str) -> None:
    body = {
        "apiVersion": f"{api.GROUP}/{api.VERSION}",
        "kind": "ModelLine",
        "metadata": {"name": "shapes", "finalizers": [api.FINALIZER]},
        "spec": {},
    }
    client.CustomObjectsApi(kube).create_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.LINE_PLURAL, body
    )


def test_a_namespace_held_by_retrainers_finalizer_with_no_operator_goes_with_its_claim_folder(
    world: World, kube: Any, crd: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    core = client.CoreV1Api(kube)
    _bound_claim(core, namespace)
    folder = claim_folder(world.state, namespace, CLAIM)
    (folder / OLD_VERSION).parent.mkdir(parents=True, exist_ok=True)
    (folder / OLD_VERSION).write_bytes(b"v1 of the demo before")
    _line_with_finalizer(kube, namespace)  # and no operator watches this namespace

    leftovers.reset(kube, world, {**os.environ, **world.env()}, namespace, "retrainer", print)

    assert _gone(core, namespace)
    assert not folder.exists()
    assert not folder.parent.exists()
    out = capsys.readouterr().out
    assert f"removed it from {api.LINE_PLURAL}/shapes" in out and api.FINALIZER in out
    pvs = core.list_persistent_volume().items
    assert [
        pv for pv in pvs if pv.spec.claim_ref and pv.spec.claim_ref.namespace == namespace
    ] == []


def test_claim_folders_of_a_namespace_already_gone_are_cleared(
    world: World, kube: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace = f"t-leftovers-{secrets.token_hex(3)}"  # never created: gone long ago
    old = claim_folder(world.state, namespace, CLAIM) / OLD_VERSION
    old.parent.mkdir(parents=True)
    old.write_bytes(b"v1 of the demo before")

    leftovers.reset(kube, world, {**os.environ, **world.env()}, namespace, "retrainer", print)

    assert not claim_folder(world.state, namespace, CLAIM).exists()
    assert "an old version there would make the new one a VersionConflict" in (
        capsys.readouterr().out
    )
