"""The preflight checks ask for a namespace's claim and Secret once per PRESENT_SECONDS while
they are there, and every time while they are not (creating one is seen at once)."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException
from retrainer_operator import kube


class Core:
    def __init__(self) -> None:
        self.present = {"data", "retrainer-s3"}
        self.reads: list[str] = []

    def _read(self, name: str) -> Any:
        self.reads.append(name)
        if name not in self.present:
            raise ApiException(status=404, reason="Not Found")
        return object()

    def read_namespaced_persistent_volume_claim(self, name: str, namespace: str, **_: Any) -> Any:
        return self._read(name)

    def read_namespaced_secret(self, name: str, namespace: str, **_: Any) -> Any:
        return self._read(name)


@pytest.fixture
def cluster() -> kube.Cluster:
    found = kube.Cluster(kubernetes.client.ApiClient())
    found.core = Core()  # type: ignore[assignment]
    return found


def test_presence_is_asked_once_per_window(cluster: kube.Cluster, monkeypatch: Any) -> None:
    core: Core = cluster.core  # type: ignore[assignment]
    for _ in range(5):
        assert cluster.claim_exists("team", "data")
        assert cluster.secret_exists("team", "retrainer-s3")
    assert core.reads == ["data", "retrainer-s3"]
    monkeypatch.setattr(kube, "PRESENT_SECONDS", 0.0)  # the window passed
    assert cluster.claim_exists("team", "data")
    assert core.reads[-1] == "data"


def test_absence_is_never_remembered(cluster: kube.Cluster) -> None:
    core: Core = cluster.core  # type: ignore[assignment]
    assert not cluster.claim_exists("team", "later")
    assert not cluster.claim_exists("team", "later")
    core.present.add("later")
    assert cluster.claim_exists("team", "later")
    assert core.reads == ["later", "later", "later"]


def test_a_claim_seen_missing_again_is_forgotten(cluster: kube.Cluster, monkeypatch: Any) -> None:
    core: Core = cluster.core  # type: ignore[assignment]
    assert cluster.claim_exists("team", "data")
    core.present.discard("data")
    monkeypatch.setattr(kube, "PRESENT_SECONDS", 0.0)
    assert not cluster.claim_exists("team", "data")
    monkeypatch.setattr(kube, "PRESENT_SECONDS", 10.0)
    assert not cluster.claim_exists("team", "data")  # not answered from the old sighting
