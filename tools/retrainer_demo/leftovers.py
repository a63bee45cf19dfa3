"""What an earlier `make demo` left, removed, so that the next one starts from any state.

A demo can end anywhere: its operator stopped (then nothing removes Retrainer's finalizers, and
its namespace would hang in Terminating), its namespace gone while the claim folders on the
host stay (the pod runner's hostPath volumes are Retain, so an old v1 would make the new v1 a
`VersionConflict`). Refusing to overwrite a version is right; a demo that cannot start again is
not. tests/integration/test_demo_leftovers.py runs each step against the real world.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from retrainer_contract import api as api_names
from retrainer_world import world as worldmod
from retrainer_world.kubelet import pvprovisioner

__all__ = ["LeftoverError", "release_finalizers", "reset"]

Say = Callable[[str], None]
GONE_SECONDS = 120


class LeftoverError(RuntimeError):
    """A leftover the demo could not remove; the message says what to do."""


def reset(
    api: client.ApiClient,
    w: worldmod.World,
    env: dict[str, str],
    namespace: str,
    release: str,
    say: Say,
) -> None:
    """Whatever an earlier demo left in `namespace` goes, so that versions restart at 1 from
    any state: the namespace (even one stuck on Retrainer's finalizers with no operator to
    remove them), its volumes, and the claim folders on the host, which outlive the namespace
    (reclaim policy Retain) and would make the new v1 a `VersionConflict` with the old one."""
    core = client.CoreV1Api(api)
    if _exists(core, namespace):
        say(f"removing the previous demo (namespace {namespace}) for a fresh start")
        helm = str(w.bin_dir / "helm")
        subprocess.run([helm, "uninstall", release, "-n", namespace], env=env, capture_output=True)
        with contextlib.suppress(ApiException):
            core.delete_namespace(namespace)
        _wait_gone(api, core, namespace, say)
    _remove_volumes(core, w, namespace, say)


def _exists(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespace(namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _wait_gone(api: client.ApiClient, core: client.CoreV1Api, namespace: str, say: Say) -> None:
    """Wait for the namespace to go, taking Retrainer's finalizers off what keeps it: the
    demo's operator is stopped by now, and no other one watches the demo's namespace."""
    deadline, told = time.monotonic() + GONE_SECONDS, False
    while _exists(core, namespace):
        if time.monotonic() > deadline:
            raise LeftoverError(
                f"namespace {namespace} did not go away in {GONE_SECONDS}s "
                f"(kubectl get ns {namespace} -o yaml names what it waits for)"
            )
        released = release_finalizers(api, namespace)
        if released and not told:
            say(
                f"no operator is running to remove Retrainer's finalizer ({api_names.FINALIZER}):"
                f" removed it from {', '.join(released)}"
            )
            told = True
        time.sleep(1)


def release_finalizers(api: client.ApiClient, namespace: str) -> list[str]:
    """Take Retrainer's finalizer off every RetrainJob and ModelLine in `namespace`; returns
    `plural/name` of each. Only the demo does this, and only to its own namespace being deleted:
    the finalizer (Kopf's, on objects an older operator timed) guards nothing that outlives the
    namespace."""
    custom = client.CustomObjectsApi(api)
    released = []
    for plural in (api_names.PLURAL, api_names.LINE_PLURAL):
        try:
            listed: Any = custom.list_namespaced_custom_object(
                api_names.GROUP, api_names.VERSION, namespace, plural
            )
        except ApiException as exc:
            if exc.status == 404:  # the CRD is not installed: nothing of ours is there
                continue
            raise
        for item in listed.get("items") or []:
            if _release(custom, namespace, plural, item):
                released.append(f"{plural}/{item['metadata']['name']}")
    return released


def _release(custom: client.CustomObjectsApi, namespace: str, plural: str, item: Any) -> bool:
    """Take Retrainer's finalizer off one object; False when it has none (or changed since it
    was read: the `test` leaves that to the next round)."""
    finalizers = item["metadata"].get("finalizers") or []
    if api_names.FINALIZER not in finalizers:
        return False
    path = f"/metadata/finalizers/{finalizers.index(api_names.FINALIZER)}"
    patch = [
        {"op": "test", "path": path, "value": api_names.FINALIZER},
        {"op": "remove", "path": path},
    ]
    try:
        custom.patch_namespaced_custom_object(
            api_names.GROUP,
            api_names.VERSION,
            namespace,
            plural,
            item["metadata"]["name"],
            patch,
            _content_type="application/json-patch+json",
        )
    except ApiException as exc:
        if exc.status in (404, 409, 422):  # gone, or changed: the next round sees it anew
            return False
        raise
    return True


def _remove_volumes(core: client.CoreV1Api, w: worldmod.World, namespace: str, say: Say) -> None:
    """The gone namespace's volumes: PV objects still naming its claims, and the claim folders
    the pod runner made for it on this host (only those, inside this world's state)."""
    volumes = core.api_client.sanitize_for_serialization(core.list_persistent_volume())["items"]
    for pv in volumes:
        if (pv["spec"].get("claimRef") or {}).get("namespace") == namespace:
            with contextlib.suppress(ApiException):
                core.delete_persistent_volume(pv["metadata"]["name"])
    folder = pvprovisioner.namespace_folder(w.state, namespace)
    if not folder.is_dir():
        return
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        raise LeftoverError(
            f"cannot remove the claim folders an earlier demo left in {folder} ({exc}); "
            "remove them by hand, or start over with `make world-down`"
        ) from exc
    say(
        f"removed the claim folders an earlier demo left ({folder}): "
        "an old version there would make the new one a VersionConflict"
    )
