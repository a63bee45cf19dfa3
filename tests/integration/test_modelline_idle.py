"""An idle ModelLine costs the apiserver nothing at its ticks, and any change is read at the
next one (issue 22: at 1,000 lines, the ticks' reads were most of an idle operator's requests).

The operator runs with a line tick every second and reaches the apiserver through a counting
proxy, so the requests counted are its own whatever else uses the world.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kubernetes import client
from operator_support import (
    GROUP,
    LINE_PLURAL,
    PLURAL,
    QUEUED_TEMPLATE,
    VERSION,
    condition,
    get_line,
    prepare_namespace,
    retrainjob,
    running_operator,
    wait_for,
)
from retrainer_world.world import World

from tests.bench.scale_support import CountingProxy, proxy_kubeconfig

pytestmark = pytest.mark.integration

TEMPLATE = QUEUED_TEMPLATE


def reads(proxy: CountingProxy) -> int:
    return int(proxy.snapshot()["requests"].get("get modellines", 0))


def reads_within(proxy: CountingProxy, seconds: float) -> int:
    """The operator's reads of ModelLines over the next `seconds` (the line ticks each second)."""
    before = reads(proxy)
    time.sleep(seconds)
    return reads(proxy) - before


def ready(kube: client.ApiClient, namespace: str) -> bool:
    return condition(get_line(kube, namespace, "quiet"), "Ready").get("status") == "True"


def test_an_idle_line_is_not_read_at_its_ticks_and_what_changes_is_read_at_the_next(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    custom = client.CustomObjectsApi(kube)
    prepare_namespace(kube, namespace)
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        LINE_PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelLine",
            "metadata": {"name": "quiet"},
            "spec": {"template": TEMPLATE},
        },
    )
    pki = world.layout.pki
    upstream = world.server.removeprefix("https://")
    tls = (pki.ca_cert, pki.admin_cert, pki.admin_key)
    with CountingProxy("apiserver", upstream, tls) as proxy:
        kubeconfig = proxy_kubeconfig(tmp_path / "kubeconfig.json", proxy.url)
        with running_operator(
            world, namespace, tmp_path, KUBECONFIG=str(kubeconfig), RETRAINER_LINE_INTERVAL="1"
        ) as operator:
            wait_for("the line Ready", lambda: ready(kube, namespace), 60, operator)
            # Settled: the passes after the one that wrote Ready found nothing to do.
            wait_for("a tick without a read", lambda: reads_within(proxy, 2) == 0, 60, operator)
            assert reads_within(proxy, 5) == 0  # five ticks: five reads before

            # A person's change of the status (here: Ready removed) is the line changed: the
            # next tick reads it and the pass writes Ready back.
            line = get_line(kube, namespace, "quiet")
            kept = [c for c in line["status"]["conditions"] if c["type"] != "Ready"]
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, LINE_PLURAL, "quiet", {"status": {"conditions": kept}}
            )
            before = reads(proxy)
            wait_for("Ready written back", lambda: ready(kube, namespace), 30, operator)
            assert reads(proxy) > before

            # A run of the line: while it is active, every tick reads the line again.
            wait_for("quiet again", lambda: reads_within(proxy, 2) == 0, 60, operator)
            run = retrainjob(
                "quiet-run", "s3://datasets/none", model="quiet", scheduling=TEMPLATE["scheduling"]
            )
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, run)
            wait_for("ticks reading the line", lambda: reads_within(proxy, 3) >= 2, 60, operator)
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "quiet-run")
            wait_for("quiet once the run is gone", lambda: not reads_within(proxy, 3), 90, operator)
