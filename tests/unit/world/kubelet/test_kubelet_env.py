"""Container env is built from the pod spec like the kubelet builds it."""

from __future__ import annotations

from typing import Any

import pytest
from retrainer_world.kubelet.env import ConfigError, build_env, expand, field_value


class Cluster:
    """Secret and configMap data as the runner would read them from the API."""

    def __init__(self) -> None:
        self.secrets = {("ns", "minio-credentials"): {"accessKey": b"ak", "secretKey": b"sk"}}
        self.maps = {("ns", "settings"): {"LOG_FORMAT": b"json", "bad key": b"x"}}

    def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return self.secrets.get((namespace, name))

    def config_map_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return self.maps.get((namespace, name))


POD: dict[str, Any] = {
    "metadata": {
        "name": "retrain-shapes-v1-abc",
        "namespace": "ns",
        "uid": "u-1",
        "labels": {"retrainer.dev/version": "1"},
        "annotations": {"note": "hi"},
    },
    "spec": {"nodeName": "local-node", "containers": []},
}


def env_of(container: dict[str, Any], base: dict[str, str] | None = None) -> dict[str, str]:
    return build_env(container, POD, Cluster(), "local-node", base or {})


def test_secret_key_refs_become_env_values() -> None:
    env = env_of(
        {
            "env": [
                {
                    "name": "AWS_ACCESS_KEY_ID",
                    "valueFrom": {
                        "secretKeyRef": {"name": "minio-credentials", "key": "accessKey"}
                    },
                }
            ]
        }
    )
    assert env == {"AWS_ACCESS_KEY_ID": "ak"}


def test_field_refs_expose_pod_identity_and_labels() -> None:
    paths = {
        "A": "metadata.name",
        "B": "metadata.namespace",
        "C": "metadata.uid",
        "D": "spec.nodeName",
        "E": "status.podIP",
        "F": "metadata.labels['retrainer.dev/version']",
        "G": "metadata.annotations['note']",
    }
    env = env_of(
        {
            "env": [
                {"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}} for k, v in paths.items()
            ]
        }
    )
    assert env == {
        "A": "retrain-shapes-v1-abc",
        "B": "ns",
        "C": "u-1",
        "D": "local-node",
        "E": "127.0.0.1",
        "F": "1",
        "G": "hi",
    }


def test_env_from_applies_prefix_skips_invalid_names_and_env_wins() -> None:
    env = env_of(
        {
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "RT_"}],
            "env": [{"name": "RT_LOG_FORMAT", "value": "plain"}],
        }
    )
    assert env == {"RT_LOG_FORMAT": "plain"}


def test_optional_missing_references_are_skipped() -> None:
    env = env_of(
        {
            "envFrom": [{"secretRef": {"name": "absent", "optional": True}}],
            "env": [
                {
                    "name": "X",
                    "valueFrom": {
                        "secretKeyRef": {"name": "minio-credentials", "key": "no", "optional": True}
                    },
                }
            ],
        }
    )
    assert env == {}


def test_missing_required_secret_names_the_secret_and_namespace() -> None:
    container = {
        "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]
    }
    with pytest.raises(ConfigError, match=r'env K: secret "absent" not found in namespace ns'):
        env_of(container)


def test_missing_required_key_names_the_key() -> None:
    container = {
        "env": [
            {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope"}}}
        ]
    }
    with pytest.raises(ConfigError, match="couldn't find key nope"):
        env_of(container)


def test_values_expand_earlier_variables_and_keep_unknown_ones() -> None:
    env = env_of(
        {"env": [{"name": "ROOT", "value": "/data"}, {"name": "P", "value": "$(ROOT)/x $(NOPE)"}]},
        base={"HOME": "/home/pod"},
    )
    assert env == {"HOME": "/home/pod", "ROOT": "/data", "P": "/data/x $(NOPE)"}


def test_double_dollar_escapes_expansion() -> None:
    assert expand("$$(ROOT) $(ROOT) $", {"ROOT": "/r"}) == "$(ROOT) /r $"


def test_unsupported_field_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"spec\.unknown"):
        field_value(POD, "spec.unknown", "local-node")
