"""Container environment, built from the pod spec the way the kubelet builds it.

Credentials must reach the trainer only through the pod spec (secretKeyRef, envFrom), so
this is the single place that turns `env`/`envFrom` into a process environment: literal
values with `$(VAR)` expansion, secret/configMap keys, downward-API fields; a missing
required reference raises `ConfigError`, which the runner reports as
CreateContainerConfigError.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

__all__ = [
    "ConfigError",
    "Lookup",
    "build_env",
    "expand",
    "field_value",
    "source_data",
]

Obj = dict[str, Any]
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_LABEL_PATH = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")
NODE_CAPACITY = {"cpu": "16", "memory": "68719476736", "ephemeral-storage": "68719476736"}


class ConfigError(Exception):
    """A container cannot be configured (missing secret/configMap/key, bad fieldRef)."""


class Lookup(Protocol):
    """Where secret and configMap data come from (the API, or a dict in tests)."""

    def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None: ...

    def config_map_data(self, namespace: str, name: str) -> dict[str, bytes] | None: ...


def source_data(lookup: Lookup, kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
    """The data of secret (`kind` "secret") or configMap `namespace/name`; None when absent."""
    if kind == "secret":
        return lookup.secret_data(namespace, name)
    return lookup.config_map_data(namespace, name)


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: unknown names stay literal, `$$` escapes a `$`."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$" or i + 1 >= len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end == -1:
                out.append(text[i:])
                break
            name = text[i + 2 : end]
            out.append(env[name] if name in env else text[i : end + 1])
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def field_value(pod: Obj, path: str, node_name: str) -> str:
    """The value of a downward-API `fieldRef.fieldPath` for this pod."""
    meta = pod.get("metadata") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName") or node_name,
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", ""),
        "status.podIP": "127.0.0.1",
        "status.podIPs": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path])
    match = _LABEL_PATH.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    raise ConfigError(f"fieldRef.fieldPath {path!r} is not supported by the pod runner")


def resource_value(container: Obj, resource: str) -> str:
    """`resourceFieldRef`: the container's limit, else its request, else node capacity."""
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    for section in ("limits", "requests") if kind == "limits" else ("requests", "limits"):
        value = (resources.get(section) or {}).get(name)
        if value is not None:
            return str(value)
    return NODE_CAPACITY.get(name, "0")


def _key_ref(
    ref: Obj, kind: str, namespace: str, lookup: Lookup, var: str
) -> tuple[bool, str | None]:
    """Resolve a secretKeyRef/configMapKeyRef; (False, None) means an optional miss."""
    name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
    data = source_data(lookup, kind, namespace, name)
    if data is None:
        if optional:
            return False, None
        raise ConfigError(f'env {var}: {kind} "{name}" not found in namespace {namespace}')
    if key not in data:
        if optional:
            return False, None
        raise ConfigError(f'env {var}: couldn\'t find key {key} in {kind} "{namespace}/{name}"')
    return True, data[key].decode("utf-8", errors="replace")


def _env_from(container: Obj, namespace: str, lookup: Lookup) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, field in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = source.get(field)
            if ref is None:
                continue
            name = ref.get("name", "")
            data = source_data(lookup, kind, namespace, name)
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'envFrom: {kind} "{name}" not found in namespace {namespace}')
            for key, value in data.items():
                if _ENV_NAME.match(prefix + key):  # the kubelet skips invalid names
                    env[prefix + key] = value.decode("utf-8", errors="replace")
    return env


def build_env(
    container: Obj, pod: Obj, lookup: Lookup, node_name: str, base: dict[str, str]
) -> dict[str, str]:
    """`base` overlaid with envFrom, then env (later entries win, as in the kubelet)."""
    namespace = pod["metadata"]["namespace"]
    env = dict(base)
    env.update(_env_from(container, namespace, lookup))
    for var in container.get("env") or []:
        name = var["name"]
        source = var.get("valueFrom")
        if source is None:
            env[name] = expand(var.get("value") or "", env)
            continue
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"].get("fieldPath", ""), node_name)
        elif "resourceFieldRef" in source:
            env[name] = resource_value(container, source["resourceFieldRef"].get("resource", ""))
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            kind = "secret" if "secretKeyRef" in source else "configmap"
            ref = source.get("secretKeyRef") or source.get("configMapKeyRef") or {}
            found, value = _key_ref(ref, kind, namespace, lookup, name)
            if found and value is not None:
                env[name] = value
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
    return env
