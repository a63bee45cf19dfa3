"""Cluster access for the operator: the few Kubernetes calls it makes, as plain dicts.

Responses are decoded from raw JSON (not the client's model classes), so the rest of the
operator works on the same camelCase dicts as the manifests it builds. Creation is
idempotent: a 409 on create means "already there", and the existing object is returned.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from retrainer_contract import api

from retrainer_operator.conditions import now_iso
from retrainer_operator.line_memory import LineMemory
from retrainer_operator.versions import Conflict

__all__ = ["Cluster", "RetrainJobChanged", "load_api_client"]

logger = logging.getLogger(__name__)
COMPONENT = "retrainer-operator"


def load_api_client(connections: int = 32) -> kubernetes.client.ApiClient:
    """An ApiClient from the in-cluster service account, else from KUBECONFIG, keeping up to
    `connections` open connections."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)
    # Many RetrainJobs reconcile in parallel threads: one pooled connection each (urllib3
    # closes a connection returned to a full pool, and the next request opens a new one).
    configuration.connection_pool_maxsize = connections
    return kubernetes.client.ApiClient(configuration)


def _decode(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.data)
    return data


def _body(manifest: Mapping[str, Any]) -> Any:
    # The client accepts plain dicts as bodies; its stubs only name the model classes.
    return dict(manifest)


class RetrainJobChanged(Conflict):
    """A RetrainJob write guarded by a resourceVersion was refused: the object changed (or
    went) since the copy the pass started from. Its own type, so that a pass reruns for this
    and not for a ModelLine write that gave up (a plain Conflict)."""


def _missing(error: ApiException) -> bool:
    return error.status == 404


# How long a claim or Secret found by the preflight checks is taken as still there.
PRESENT_SECONDS = 10.0


class Cluster:
    """The operator's Kubernetes calls; every method returns plain dicts."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self.api_client = api_client
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.batch = kubernetes.client.BatchV1Api(api_client)
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.host = socket.gethostname()
        # (kind, namespace, name) -> when it was last found: a burst of RetrainJobs in one
        # namespace checks its claim and Secret once per PRESENT_SECONDS, not once each. Only
        # presence is kept (a missing one is asked again every time, so creating it is seen
        # at once); one deleted meanwhile shows up as the pod's mount failure instead.
        self._present: dict[tuple[str, str, str], float] = {}
        self._present_guard = threading.Lock()
        # Each ModelLine as last read or written here (line_memory.py): where an allocation
        # starts, never what it trusts (its write is a compare-and-set).
        self.lines = LineMemory()

    # ---- RetrainJobs ----------------------------------------------------------------------

    def read_retrainjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _decode(
                self.custom.get_namespaced_custom_object(
                    api.GROUP,
                    api.VERSION,
                    namespace,
                    api.PLURAL,
                    name,
                    _preload_content=False,
                )
            )
        except ApiException as error:
            if _missing(error):
                return None
            raise

    def list_retrainjobs(self, namespace: str) -> list[dict[str, Any]]:
        items = _decode(
            self.custom.list_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, api.PLURAL, _preload_content=False
            )
        ).get("items", [])
        return list(items)

    def patch_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> bytes:
        """Merge-patch the status subresource (lists such as conditions are replaced whole);
        the object as stored (raw JSON). With `resource_version`, only if the object is still
        at it (RetrainJobChanged otherwise, a deleted one included)."""
        return self._patch_object(
            api.PLURAL,
            namespace,
            name,
            {"status": dict(status)},
            resource_version,
            subresource=True,
            refused=RetrainJobChanged,
        )

    def patch_annotations(
        self,
        namespace: str,
        name: str,
        annotations: Mapping[str, str],
        resource_version: str | None = None,
    ) -> bytes:
        """Merge-patch annotations; the object as stored (raw JSON). `resource_version`: as
        for `patch_status`."""
        return self._patch_object(
            api.PLURAL,
            namespace,
            name,
            {"metadata": {"annotations": dict(annotations)}},
            resource_version,
            subresource=False,
            refused=RetrainJobChanged,
        )

    def _patch_object(
        self,
        plural: str,
        namespace: str,
        name: str,
        body: dict[str, Any],
        resource_version: str | None,
        subresource: bool,
        refused: type[Conflict] = Conflict,
    ) -> bytes:
        """Merge-patch a custom object (or its status subresource); the object as stored (raw
        JSON). With `resource_version`, only if the object is still at it: `refused` otherwise,
        a deleted one included (gone is not at that resourceVersion either: the writer reads
        again, and finds it missing, instead of failing its pass)."""
        if resource_version is not None:
            body.setdefault("metadata", {})["resourceVersion"] = resource_version
        patch = (
            self.custom.patch_namespaced_custom_object_status
            if subresource
            else self.custom.patch_namespaced_custom_object
        )
        try:
            response: Any = patch(
                api.GROUP, api.VERSION, namespace, plural, name, body, _preload_content=False
            )
        except ApiException as error:
            if error.status == 409 or (error.status == 404 and resource_version is not None):
                raise refused(str(error.reason)) from error
            raise
        raw: bytes = response.data
        return raw

    # ---- Jobs and pods --------------------------------------------------------------------

    def create_job(self, manifest: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the Job; (job, True) when created now, (existing job, False) on 409."""
        meta = manifest["metadata"]
        try:
            created = _decode(
                self.batch.create_namespaced_job(
                    meta["namespace"], _body(manifest), _preload_content=False
                )
            )
            return created, True
        except ApiException as error:
            if error.status != 409:
                raise
        existing = self.read_job(meta["namespace"], meta["name"])
        if existing is None:  # deleted between our create and read: let the caller retry
            raise RuntimeError(f"Job {meta['namespace']}/{meta['name']} conflicted then vanished")
        return existing, False

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and (in the background) its pods; gone already is fine."""
        try:
            self.batch.delete_namespaced_job(
                name, namespace, propagation_policy="Background", _preload_content=False
            )
        except ApiException as error:
            if not _missing(error):
                raise

    def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _decode(self.batch.read_namespaced_job(name, namespace, _preload_content=False))
        except ApiException as error:
            if _missing(error):
                return None
            raise

    def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        items = _decode(
            self.batch.list_namespaced_job(
                namespace, label_selector=label_selector, _preload_content=False
            )
        ).get("items", [])
        return list(items)

    def list_job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        items = _decode(
            self.core.list_namespaced_pod(
                namespace, label_selector=f"job-name={job_name}", _preload_content=False
            )
        ).get("items", [])
        return list(items)

    # ---- preflight ------------------------------------------------------------------------

    def claim_exists(self, namespace: str, name: str) -> bool:
        return self._exists(
            ("claim", namespace, name),
            lambda: self.core.read_namespaced_persistent_volume_claim(
                name, namespace, _preload_content=False
            ),
        )

    def secret_exists(self, namespace: str, name: str) -> bool:
        return self._exists(
            ("secret", namespace, name),
            lambda: self.core.read_namespaced_secret(name, namespace, _preload_content=False),
        )

    def _exists(self, key: tuple[str, str, str], read: Callable[[], object]) -> bool:
        with self._present_guard:
            seen = self._present.get(key)
        if seen is not None and time.monotonic() - seen < PRESENT_SECONDS:
            return True
        try:
            read()
        except ApiException as error:
            if _missing(error):
                with self._present_guard:
                    self._present.pop(key, None)
                return False
            raise
        with self._present_guard:
            self._present[key] = time.monotonic()
        return True

    # ---- ModelLines (the ledger: versions.LedgerClient; the line reconciler) -------------

    def read_modelline(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            response = self.custom.get_namespaced_custom_object(
                api.GROUP,
                api.VERSION,
                namespace,
                api.LINE_PLURAL,
                name,
                _preload_content=False,
            )
        except ApiException as error:
            if _missing(error):
                self.lines.forget(namespace, name)
                return None
            raise
        return self._remember_line(namespace, name, response)

    def remembered_modelline(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The line as this process last read or wrote it, else read now."""
        return self.lines.recall(namespace, name) or self.read_modelline(namespace, name)

    def _remember_line(self, namespace: str, name: str, response: Any) -> dict[str, Any]:
        self.lines.remember(namespace, name, response.data)
        return _decode(response)

    def create_modelline(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body["metadata"]["name"])
        try:
            response = self.custom.create_namespaced_custom_object(
                api.GROUP,
                api.VERSION,
                namespace,
                api.LINE_PLURAL,
                dict(body),
                _preload_content=False,
            )
        except ApiException as error:
            if error.status == 409:
                self.lines.forget(namespace, name)
                raise Conflict(str(error.reason)) from error
            raise
        return self._remember_line(namespace, name, response)

    def replace_modelline_status(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            response = self.custom.replace_namespaced_custom_object_status(
                api.GROUP,
                api.VERSION,
                namespace,
                api.LINE_PLURAL,
                name,
                dict(body),
                _preload_content=False,
            )
        except ApiException as error:
            self.lines.forget(namespace, name)
            if error.status == 409:
                raise Conflict(str(error.reason)) from error
            raise
        return self._remember_line(namespace, name, response)

    def patch_modelline_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> None:
        """Merge-patch fields the line reconciler owns (never `ledger`: versions.py replaces
        it under optimistic concurrency). With `resource_version`, only if the object is still
        at it (Conflict otherwise, a deleted one included)."""
        try:
            raw = self._patch_object(
                api.LINE_PLURAL,
                namespace,
                name,
                {"status": dict(status)},
                resource_version,
                subresource=True,
            )
        except (Conflict, ApiException):
            self.lines.forget(namespace, name)
            raise
        self.lines.remember(namespace, name, raw)

    def create_retrainjob(self, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create a RetrainJob; (object, True) when created now, (existing, False) on 409."""
        meta = body["metadata"]
        try:
            created = _decode(
                self.custom.create_namespaced_custom_object(
                    api.GROUP,
                    api.VERSION,
                    meta["namespace"],
                    api.PLURAL,
                    dict(body),
                    _preload_content=False,
                )
            )
            return created, True
        except ApiException as error:
            if error.status != 409:
                raise
        existing = self.read_retrainjob(meta["namespace"], meta["name"])
        return existing or {}, False

    def delete_retrainjob(self, namespace: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, api.PLURAL, name, _preload_content=False
            )
        except ApiException as error:
            if not _missing(error):
                raise

    # ---- events ---------------------------------------------------------------------------

    def emit_event(
        self,
        body: Mapping[str, Any],
        reason: str,
        message: str,
        warning: bool = False,
        kind: str | None = None,
    ) -> None:
        """A core/v1 Event on the RetrainJob (or the object of `kind`, a ModelLine); failures
        are logged, never raised."""
        meta = body["metadata"]
        now = now_iso()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": api.API_VERSION,
                "kind": kind or body.get("kind") or api.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": COMPONENT, "host": self.host},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.host,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(
                meta["namespace"], _body(event), _preload_content=False
            )
        except ApiException as error:
            logger.warning(
                "event not posted reason=%s status=%s object=%s/%s",
                reason,
                error.status,
                meta["namespace"],
                meta["name"],
            )
