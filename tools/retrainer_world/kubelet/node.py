"""The Node the pod runner stands for, and the heartbeat that keeps it Ready.

The node lifecycle controller taints a node whose Lease and Ready heartbeat go stale, and
the taint manager then evicts its pods; so the runner registers the Node once and renews
both every ~10 s, like a kubelet does.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from retrainer_world.kubelet.kube import SMP, ApiException, Kube, body_of, micro_now, now

__all__ = ["HEARTBEAT_SECONDS", "NodeKeeper", "lease_manifest", "node_manifest", "node_status"]

HEARTBEAT_SECONDS = 10.0
LEASE_NAMESPACE = "kube-node-lease"
Obj = dict[str, Any]
log = logging.getLogger("retrainer_world.kubelet")

CAPACITY = {"cpu": "16", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "8"}
HEALTHY = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)


def node_status(stamp: str, registering: bool = False) -> Obj:
    """Node status with every condition healthy and heartbeats at `stamp` (transitions
    too when `registering`; a heartbeat leaves them as they were)."""
    conditions = [
        {
            "type": kind,
            "status": "False",
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": stamp,
        }
        for kind, reason, message in HEALTHY
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "retrainer pod runner is posting ready status",
            "lastHeartbeatTime": stamp,
        }
    )
    if registering:
        for cond in conditions:
            cond["lastTransitionTime"] = stamp
    return {
        "capacity": dict(CAPACITY),
        "allocatable": dict(CAPACITY),
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": "localhost"},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "osImage": "retrainer local world",
            "kernelVersion": "",
            "kubeletVersion": "v0.0.0-retrainer-podrunner",
            "kubeProxyVersion": "",
            "containerRuntimeVersion": "local://processes",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }


def node_manifest(name: str, stamp: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {},
        "status": node_status(stamp, registering=True),
    }


def lease_manifest(node: str, node_uid: str, micro_stamp: str) -> Obj:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}
            ],
        },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": 40,
            "renewTime": micro_stamp,
        },
    }


class NodeKeeper:
    """Registers the Node and renews its Ready heartbeat and Lease in a daemon thread."""

    def __init__(self, kube: Kube, name: str, stop: threading.Event) -> None:
        self.kube = kube
        self.name = name
        self.stop = stop
        self.uid = ""

    def register(self) -> None:
        manifest = node_manifest(self.name, now())
        core = self.kube.core
        try:
            self.uid = self.kube.create("/api/v1/nodes", manifest)["metadata"]["uid"]
            log.info("event=node_registered node=%s", self.name)
        except ApiException as exc:
            if exc.status != 409:
                raise
            patch = {"metadata": {"labels": manifest["metadata"]["labels"]}}
            resp = core.patch_node(self.name, patch, _content_type=SMP, _preload_content=False)
            self.uid = body_of(resp)["metadata"]["uid"]
            log.info("event=node_reused node=%s", self.name)
        self.beat()

    def beat(self) -> None:
        """Post Ready status and renew the Lease once."""
        self.kube.core.patch_node_status(
            self.name,
            {"status": node_status(now())},
            _content_type=SMP,
            _preload_content=False,
        )
        lease = lease_manifest(self.name, self.uid, micro_now())
        coord = self.kube.coord
        try:
            coord.patch_namespaced_lease(
                self.name,
                LEASE_NAMESPACE,
                {"spec": lease["spec"]},
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
            self.kube.create(path, lease)

    def run(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                self.beat()
            except Exception as exc:  # apiserver briefly away: try again next beat
                log.warning("event=heartbeat_failed node=%s error=%r", self.name, exc)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="node-heartbeat", daemon=True)
        thread.start()
        return thread
