"""A RetrainJob's passes after its first start from it as Kopf's watch or the operator's own last
write showed it, not from a GET (issue 22: 4.3 GETs per run at scale 0.1, the most frequent
request of a burst), and from its Job and pods as their watches showed them (watched.py: a GET
and a LIST per pass before); the apiserver refuses a write from a copy another writer made
stale.

The operator reaches the apiserver through a counting proxy, so the requests counted are its
own whatever else uses the world.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client
from operator_support import (
    GROUP,
    PLURAL,
    VERSION,
    condition,
    create,
    free_port,
    get,
    operator_in_prepared_namespace,
    retrainjob,
    wait_for,
)
from retrainer_operator import kube as operator_kube
from retrainer_operator.line_status import Conflict
from retrainer_world.world import World

from tests.bench.scale_support import CountingProxy, proxy_kubeconfig

pytestmark = pytest.mark.integration

# A pod no node can take: the RetrainJob waits, Pending, and the ticker passes over it each second.
NOWHERE = {"scheduling": {"nodeSelector": {"retrainer.dev/test-no-such-node": "true"}}}


def counted(proxy: CountingProxy, request: str) -> int:
    return int(proxy.snapshot()["requests"].get(request, 0))


def reconcile_passes(port: int) -> int:
    """How many RetrainJob passes the operator has made (its /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = re.search(r"^retrainer_reconcile_seconds_count ([0-9.e+]+)$", text, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


def test_the_passes_over_a_waiting_retrainjob_read_neither_it_nor_its_job_nor_its_pods(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    pki = world.layout.pki
    upstream = world.server.removeprefix("https://")
    metrics_port = free_port()
    with CountingProxy(
        "apiserver", upstream, (pki.ca_cert, pki.admin_cert, pki.admin_key)
    ) as proxy:
        kubeconfig = proxy_kubeconfig(tmp_path / "kubeconfig.json", proxy.url)
        with operator_in_prepared_namespace(
            world,
            kube,
            namespace,
            tmp_path,
            KUBECONFIG=str(kubeconfig),
            RETRAINER_PROGRESS_INTERVAL="1",
            RETRAINER_METRICS_PORT=str(metrics_port),
        ) as operator:
            create(kube, namespace, retrainjob("nowhere", "s3://datasets/none", **NOWHERE))
            wait_for(
                "PodUnschedulable",
                lambda: (
                    condition(get(kube, namespace, "nowhere"), "Running").get("reason")
                    == "PodUnschedulable"
                ),
                90,
                operator,
            )
            requests = ("get retrainjobs", "get jobs", "list pods")
            before = {request: counted(proxy, request) for request in requests}
            passes = reconcile_passes(metrics_port)
            wait_for(
                "three more of the ticker's passes",
                lambda: reconcile_passes(metrics_port) >= passes + 3,
                30,
                operator,
            )
            # None of them read the RetrainJob, its Job or its pods: one GET of each and a
            # LIST of the pods per pass before.
            assert {request: counted(proxy, request) for request in requests} == before

            # A change by another writer reaches the next passes through the watch: a person
            # clears the Running condition; a pass writes it back from their version (or from
            # a read, when its copy was older: the write is refused), and from the pod as the
            # pod watch showed it.
            obj = get(kube, namespace, "nowhere")
            kept = [c for c in obj["status"]["conditions"] if c["type"] != "Running"]
            client.CustomObjectsApi(kube).patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, "nowhere", {"status": {"conditions": kept}}
            )
            wait_for(
                "Running written back",
                lambda: (
                    condition(get(kube, namespace, "nowhere"), "Running").get("reason")
                    == "PodUnschedulable"
                ),
                30,
                operator,
            )
            assert counted(proxy, "get jobs") == before["get jobs"]
            assert counted(proxy, "list pods") == before["list pods"]
    assert get(kube, namespace, "nowhere")["status"]["phase"] == "Pending"


def test_the_apiserver_refuses_a_write_from_a_stale_copy(
    namespace: str, kube: client.ApiClient, crd: object
) -> None:
    """What the passes' compare-and-set relies on, on the real apiserver: a status or
    annotations merge patch naming an older resourceVersion is refused (Conflict), and the
    other writer's change stays; one naming the current version lands."""
    cluster = operator_kube.Cluster(kube)
    custom = client.CustomObjectsApi(kube)
    created = create(kube, namespace, retrainjob("stale", "s3://datasets/none"))
    ours = created["metadata"]["resourceVersion"]
    theirs = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "stale", {"status": {"jobName": "theirs"}}
    )["metadata"]["resourceVersion"]
    assert theirs != ours

    with pytest.raises(Conflict):
        cluster.patch_status(namespace, "stale", {"jobName": "ours"}, ours)
    with pytest.raises(Conflict):
        cluster.patch_annotations(namespace, "stale", {"retrainer.dev/x": "ours"}, ours)
    obj = get(kube, namespace, "stale")
    assert obj["status"]["jobName"] == "theirs"
    assert "retrainer.dev/x" not in (obj["metadata"].get("annotations") or {})

    cluster.patch_status(namespace, "stale", {"jobName": "ours"}, theirs)
    assert get(kube, namespace, "stale")["status"]["jobName"] == "ours"

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "stale")
    wait_for(
        "deleted",
        lambda: (
            not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        ),
        30,
    )
    with pytest.raises(Conflict):  # gone is not at that version either: the pass reads again
        cluster.patch_status(namespace, "stale", {"jobName": "late"}, theirs)
