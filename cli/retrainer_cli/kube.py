"""Cluster access for the `retrainer` CLI: one place that loads credentials and reads objects.

The commands take plain dicts from here, so their formatting is testable without a cluster.
Credentials come from the kubeconfig (KUBECONFIG or ~/.kube/config), else from the in-cluster
service account, like kubectl. The RetrainJob's group, version and plural are the contract's
(retrainer_contract.api), the same the operator serves.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException
from retrainer_contract.api import (
    API_VERSION,
    GROUP,
    KIND,
    LINE_KIND,
    LINE_PLURAL,
    PLURAL,
    VERSION,
)

__all__ = [
    "CliError",
    "Conflict",
    "api_client",
    "current_namespace",
    "get_modelline",
    "get_retrainjob",
    "list_events",
    "list_retrainjobs",
    "patch_modelline_status",
    "post_line_event",
]

_SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class CliError(Exception):
    """A problem the user can fix; the CLI prints the message and exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Conflict(Exception):
    """The object changed since it was read (409): read it again and recompute."""


def api_client(context: str | None = None) -> client.ApiClient:
    """An ApiClient from the kubeconfig (or in-cluster config); CliError names the fix."""
    try:
        config.load_kube_config(context=context)
    except (ConfigException, FileNotFoundError, TypeError) as kubeconfig_error:
        try:
            config.load_incluster_config()
        except ConfigException:
            why = str(kubeconfig_error).rstrip(".")
            raise CliError(
                f"no cluster credentials ({why}); set KUBECONFIG to a kubeconfig file "
                "(for the local world: eval $(.venv/bin/python -m retrainer_world env))"
            ) from None
    return client.ApiClient()


def current_namespace(context: str | None = None) -> str:
    """The kubeconfig context's namespace (like kubectl), in a pod its own; else `default`."""
    try:
        contexts, active = config.list_kube_config_contexts()
    except (ConfigException, FileNotFoundError, TypeError):
        try:
            with open(_SA_NAMESPACE, encoding="utf-8") as f:
                return f.read().strip() or "default"
        except OSError:
            return "default"
    if context:
        active = next((c for c in contexts if c.get("name") == context), active)
    return str((active or {}).get("context", {}).get("namespace") or "default")


def _api_error(exc: client.ApiException, what: str) -> CliError:
    if exc.status == 404:
        return CliError(
            f"{what} not found (is the {KIND} CRD installed? kubectl get crd {PLURAL}.{GROUP})",
            exit_code=1,
        )
    if exc.status in (401, 403):
        return CliError(f"{what}: access denied ({exc.reason}); check your RBAC", exit_code=1)
    return CliError(f"{what}: the apiserver answered {exc.status} {exc.reason}", exit_code=1)


def _list(
    api: client.ApiClient, plural: str, namespace: str | None, *, none_without_crd: bool = False
) -> list[dict[str, Any]]:
    """The objects of `plural` in one namespace, or in all when `namespace` is None."""
    custom = client.CustomObjectsApi(api)
    body: Any
    try:
        if namespace is None:
            body = custom.list_cluster_custom_object(GROUP, VERSION, plural)
        else:
            body = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
    except client.ApiException as exc:
        if exc.status == 404 and none_without_crd:
            return []
        raise _api_error(exc, plural) from None
    return list(body.get("items", []))


def _get(
    api: client.ApiClient, plural: str, namespace: str, name: str, what: str, not_found: str
) -> dict[str, Any]:
    """One object of `plural`; CliError (exit 1) with `not_found` when it does not exist."""
    custom = client.CustomObjectsApi(api)
    try:
        obj: Any = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        return dict(obj)
    except client.ApiException as exc:
        if exc.status == 404:
            raise CliError(not_found, exit_code=1) from None
        raise _api_error(exc, what) from None


def list_retrainjobs(api: client.ApiClient, namespace: str | None) -> list[dict[str, Any]]:
    """RetrainJobs of one namespace, or of all namespaces when `namespace` is None."""
    return _list(api, PLURAL, namespace)


def list_modellines(api: client.ApiClient, namespace: str | None) -> list[dict[str, Any]]:
    """ModelLines of one namespace, or of all namespaces when `namespace` is None; [] when the
    ModelLine CRD is not installed (an older cluster), so `versions` still lists RetrainJobs."""
    return _list(api, LINE_PLURAL, namespace, none_without_crd=True)


def get_retrainjob(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """One RetrainJob; CliError (exit 1) when it does not exist."""
    return _get(
        api,
        PLURAL,
        namespace,
        name,
        f"{KIND.lower()} {name}",
        f"{KIND.lower()} {name!r} not found in namespace {namespace!r} "
        f"(list them: kubectl get {PLURAL} -n {namespace})",
    )


def list_events(api: client.ApiClient, namespace: str, uid: str) -> list[dict[str, Any]]:
    """Core events about the object with `uid`, oldest first (as kubectl describe shows them)."""
    core = client.CoreV1Api(api)
    try:
        events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.uid={uid}")
    except client.ApiException as exc:
        if exc.status in (401, 403):
            return []  # describe still shows the status without events
        raise _api_error(exc, "events") from None
    items = [api.sanitize_for_serialization(e) for e in events.items]

    def when(event: dict[str, Any]) -> str:
        return str(
            event.get("lastTimestamp")
            or event.get("eventTime")
            or event.get("firstTimestamp")
            or event.get("metadata", {}).get("creationTimestamp")
            or ""
        )

    return sorted(items, key=when)


# ---- ModelLines -----------------------------------------------------------------------------


def get_modelline(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """One ModelLine; CliError (exit 1) when it does not exist."""
    return _get(
        api,
        LINE_PLURAL,
        namespace,
        name,
        f"{LINE_KIND.lower()} {name}",
        f"model line {name!r} not found in namespace {namespace!r}: the operator creates "
        f"its {LINE_KIND} when the line first runs (kubectl get {LINE_PLURAL} -n {namespace})",
    )


def patch_modelline_status(
    api: client.ApiClient,
    namespace: str,
    name: str,
    status: Mapping[str, Any],
    resource_version: str,
) -> dict[str, Any]:
    """Merge-patch `status` into the ModelLine's status subresource, only if the object is
    still at `resource_version` (Conflict otherwise); other status fields are left alone."""
    custom = client.CustomObjectsApi(api)
    body = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
    try:
        obj: Any = custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, LINE_PLURAL, name, body
        )
        return dict(obj)
    except client.ApiException as exc:
        if exc.status == 409:
            raise Conflict(str(exc.reason)) from None
        raise _api_error(exc, f"{LINE_KIND.lower()} {name} status") from None


def post_line_event(
    api: client.ApiClient, line: Mapping[str, Any], reason: str, message: str
) -> None:
    """A Normal core Event on the ModelLine, from the CLI (best effort: RBAC may forbid it)."""
    meta = line["metadata"]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}"},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": LINE_KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Normal",
        "source": {"component": "retrainer-cli"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    core: Any = client.CoreV1Api(api)  # a dict body: the typed model adds nothing here
    try:
        core.create_namespaced_event(meta["namespace"], event)
    except client.ApiException as exc:
        print(f"warning: event {reason} not posted ({exc.status} {exc.reason})")
