"""Thin dict-in/dict-out access to the apiserver for the pod runner.

The pod runner behaves like a kubelet: it patches status subresources with strategic merge
patches and must keep fields other writers own (the apiserver's DisruptionTarget condition).
The generated client's models would round-trip those objects through pydantic and its
default patch content type is JSON patch, so every call here asks for raw JSON and names the
patch type explicitly. Watches reuse the client's `Watch` with `deserialize=False`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

__all__ = [
    "SMP",
    "ApiException",
    "Kube",
    "body_of",
    "micro_now",
    "now",
    "watch_forever",
]

SMP = "application/strategic-merge-patch+json"
Obj = dict[str, Any]
log = logging.getLogger("retrainer_world.kubelet")


def now() -> str:
    """RFC 3339 seconds, the format of metav1.Time."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    """RFC 3339 microseconds, the format of metav1.MicroTime (Lease renewTime)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def body_of(resp: Any) -> Obj:
    """The JSON body of a raw (`_preload_content=False`) response."""
    data = resp.data if hasattr(resp, "data") else resp.read()
    return json.loads(data) if data else {}


class Kube:
    """The calls the runner makes, each returning plain dicts (camelCase, as on the wire)."""

    def __init__(self, kubeconfig: str) -> None:
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        self.kubeconfig = kubeconfig
        self.server: str = cfg.host
        self.api = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api)
        self.coord = client.CoordinationV1Api(self.api)
        self._lock = threading.Lock()

    def request(
        self, method: str, path: str, body: Obj | None = None, content_type: str = ""
    ) -> Obj:
        """A raw API call (the typed create methods insist on models); ApiException on error."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        params = self.api.param_serialize(
            method=method,
            resource_path=path,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self.api.call_api(*params, _request_timeout=30)
        data = resp.read()
        if not 200 <= resp.status <= 299:
            raise ApiException.from_response(http_resp=resp, body=data.decode(), data=None)
        return json.loads(data) if data else {}

    def create(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body)

    # reads -------------------------------------------------------------------------------
    def get_optional(self, fn: Callable[..., Any], *args: Any) -> Obj | None:
        """`fn(*args)` as a dict, or None when the object does not exist."""
        try:
            return body_of(fn(*args, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        import base64

        obj = self.get_optional(self.core.read_namespaced_secret, name, namespace)
        if obj is None:
            return None
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}

    def config_map_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        import base64

        obj = self.get_optional(self.core.read_namespaced_config_map, name, namespace)
        if obj is None:
            return None
        out = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return out

    def list_all(self, fn: Callable[..., Any], **kwargs: Any) -> Obj:
        return body_of(fn(_preload_content=False, **kwargs))

    # writes ------------------------------------------------------------------------------
    def patch_pod_status(self, namespace: str, name: str, status: Obj) -> None:
        self.core.patch_namespaced_pod_status(
            name,
            namespace,
            {"status": status},
            _content_type=SMP,
            _preload_content=False,
            _request_timeout=15,
        )

    def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        """Delete with grace 0 (what the kubelet does once the containers are gone)."""
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        try:
            self.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", body)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def token(self, namespace: str, sa: str, pod: Obj, audiences: list[str], seconds: int) -> str:
        """A bound service-account token (TokenRequest), as the kubelet requests it."""
        spec: Obj = {
            "expirationSeconds": seconds,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            },
        }
        if audiences:
            spec["audiences"] = audiences
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token"
        resp = self.create(path, {"apiVersion": "authentication.k8s.io/v1", "spec": spec})
        return str(resp["status"]["token"])


def watch_forever(
    kube: Kube,
    list_fn: Callable[..., Any],
    on_event: Callable[[str, Obj], None],
    stop: threading.Event,
    *,
    what: str,
    on_listed: Callable[[list[Obj]], None] | None = None,
    **selectors: Any,
) -> None:
    """List then watch `list_fn` until `stop` is set; relists after 410 Gone or errors.

    Every listed object is delivered as a synthetic "SYNC" event first, so handlers are
    level-triggered; `on_listed` gets the whole listing, to notice objects deleted while
    no watch was open.
    """
    backoff = 1.0
    while not stop.is_set():
        try:
            listing = kube.list_all(list_fn, **selectors)
            items = listing.get("items") or []
            for item in items:
                on_event("SYNC", item)
            if on_listed is not None:
                on_listed(items)
            rv = listing["metadata"]["resourceVersion"]
            for type_, obj in _stream(list_fn, rv, stop, **selectors):
                on_event(type_, obj)
                backoff = 1.0
        except ApiException as exc:
            if exc.status != 410:
                log.warning("event=watch_error what=%s status=%s", what, exc.status)
                stop.wait(backoff)
                backoff = min(backoff * 2, 15.0)
        except Exception as exc:  # apiserver restarts, connection resets
            log.warning("event=watch_error what=%s error=%r", what, exc)
            stop.wait(backoff)
            backoff = min(backoff * 2, 15.0)


def _stream(
    list_fn: Callable[..., Any], rv: str, stop: threading.Event, **selectors: Any
) -> Iterator[tuple[str, Obj]]:
    """Watch from `rv`, following bookmarks, until the server ends or `stop` is set."""
    while not stop.is_set():
        w = watch.Watch()
        ended_at = time.monotonic()
        for event in w.stream(
            list_fn,
            resource_version=rv,
            timeout_seconds=120,
            allow_watch_bookmarks=True,
            deserialize=False,
            _request_timeout=150,
            **selectors,
        ):
            if stop.is_set():
                w.stop()
                return
            obj = event["object"]
            rv = obj.get("metadata", {}).get("resourceVersion", rv)
            if event["type"] == "BOOKMARK":
                continue
            yield event["type"], obj
        if time.monotonic() - ended_at < 1:
            stop.wait(1)  # a server that closes at once must not make us spin
