"""The pod runner: a kubelet stand-in that runs the local world's pods as processes or containers.

Started by the world as
`python -m retrainer_world.kubelet --kubeconfig K --state S --node local-node`, it keeps
the Node Ready (node.py), provisions hostPath volumes for claims (pvprovisioner.py), and
runs every pod the real scheduler binds to the node, one `PodWorker` thread per pod
(worker.py), reporting status through the API so the real Job controller drives Jobs.
Structured logs (key=value) go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from retrainer_world.kubelet import images, node, pvprovisioner, service
from retrainer_world.kubelet.engine import EngineFinder
from retrainer_world.kubelet.kube import Kube, watch_forever
from retrainer_world.kubelet.launch import RUNTIMES, LaunchContext, base_env, pod_dir
from retrainer_world.kubelet.worker import PodWorker

__all__ = ["ClusterSource", "Runner", "main", "needs_adoption"]

Obj = dict[str, Any]
ROOT_CA = "kube-root-ca.crt"
TERMINAL = ("Succeeded", "Failed")
log = logging.getLogger("retrainer_world.kubelet")


class ClusterSource:
    """Secrets, configMaps, claims and tokens for pods, read from the API on demand."""

    def __init__(self, kube: Kube, ca_file: str) -> None:
        self.kube = kube
        self.ca_file = ca_file

    def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return self.kube.secret_data(namespace, name)

    def config_map_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        data = self.kube.config_map_data(namespace, name)
        if data is None and name == ROOT_CA and self.ca_file:
            # The root-ca publisher may not run in the world; the CA is the same one.
            return {"ca.crt": Path(self.ca_file).read_bytes()}
        return data

    def claim_path(self, namespace: str, claim: str) -> Path | None:
        core = self.kube.core
        pvc = self.kube.get_optional(core.read_namespaced_persistent_volume_claim, claim, namespace)
        if pvc is None or (pvc.get("status") or {}).get("phase") != "Bound":
            return None
        pv = self.kube.get_optional(core.read_persistent_volume, pvc["spec"]["volumeName"])
        if pv is None:
            return None
        spec = pv["spec"]
        path = (spec.get("hostPath") or spec.get("local") or {}).get("path")
        return Path(path) if path else None

    def token(self, namespace: str, sa: str, pod: Obj, audiences: list[str], seconds: int) -> str:
        return self.kube.token(namespace, sa, pod, audiences, seconds)


def needs_adoption(pod: Obj) -> bool:
    """True when a previous runner started this pod's containers (their processes are gone)."""
    status = pod.get("status") or {}
    if status.get("phase") == "Running":
        return True
    statuses = (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
    return any("running" in (s.get("state") or {}) or s.get("restartCount") for s in statuses)


class Runner:
    """Dispatches pod events for one node to per-pod workers."""

    def __init__(self, kube: Kube, ctx: LaunchContext, stop: threading.Event) -> None:
        self.kube, self.ctx, self.stop = kube, ctx, stop
        self.workers: dict[str, PodWorker] = {}
        self.finished: set[str] = set()
        self.lock = threading.Lock()

    def on_pod(self, type_: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            worker = self.workers.get(uid)
            if worker is not None and not worker.is_alive():
                del self.workers[uid]
                self.finished.add(uid)
                worker = None
            if type_ == "DELETED":
                if worker is not None:
                    worker.gone()
                self.cleanup(uid)
                return
            if worker is not None:
                worker.update(pod)
                return
            if uid in self.finished or (pod.get("status") or {}).get("phase") in TERMINAL:
                return
            if self.stop.is_set():
                return
            worker = PodWorker(self.kube, self.ctx, pod, adopt=needs_adoption(pod))
            self.workers[uid] = worker
            log.info(
                "event=pod_accepted namespace=%s pod=%s uid=%s adopt=%s",
                pod["metadata"]["namespace"],
                pod["metadata"]["name"],
                uid,
                worker.adopt,
            )
            worker.start()

    def cleanup(self, uid: str) -> None:
        """A deleted pod's folders (emptyDirs, secrets, its token's kubeconfig, home, work)
        go with it, like a container's filesystem; termination messages stay for debugging."""
        folder = pod_dir(self.ctx, uid)
        if not folder.is_dir():
            return
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            elif not entry.name.endswith(".termination-log"):
                entry.unlink(missing_ok=True)

    def watch_pods(self) -> None:
        watch_forever(
            self.kube,
            self.kube.core.list_pod_for_all_namespaces,
            self.on_pod,
            self.stop,
            what="pods",
            on_listed=self.on_listed,
            field_selector=f"spec.nodeName={self.ctx.node}",
        )

    def on_listed(self, pods: list[Obj]) -> None:
        """Pods deleted while the watch was down never send DELETED: end their workers."""
        present = {p["metadata"]["uid"] for p in pods}
        with self.lock:
            missing = [w for uid, w in self.workers.items() if uid not in present]
        for worker in missing:
            worker.gone()

    def shutdown(self) -> None:
        """Terminate every child process; statuses are settled by the next runner's adoption."""
        with self.lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.shutdown()
        for worker in workers:
            worker.join(timeout=10)


def _register(keeper: node.NodeKeeper, stop: threading.Event) -> None:
    """Register the Node, waiting for the apiserver for up to a minute."""
    deadline = time.monotonic() + 60
    while True:
        try:
            keeper.register()
            return
        except Exception as exc:
            if time.monotonic() > deadline or stop.is_set():
                raise
            log.warning("event=register_retry node=%s error=%r", keeper.name, exc)
            stop.wait(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m retrainer_world.kubelet")
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the local world")
    parser.add_argument("--state", required=True, type=Path, help="world state folder")
    parser.add_argument("--node", default="local-node", help="Node name to register")
    parser.add_argument("--images", type=Path, default=images.IMAGES_FILE)
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="process",
        help="how pods run unless their namespace's retrainer.dev/pod-runtime label says",
    )
    parser.add_argument(
        "--service-address",
        default="",
        help="loopback address for the `kubernetes` Service (port 443) in container mode",
    )
    return parser.parse_args(argv)


def start_service(server: str, address: str, stop: threading.Event) -> str:
    """The `kubernetes` Service for containers; '' when its address cannot be bound."""
    if not address:
        return ""
    parts = urlsplit(server)
    try:
        forwarder = service.ServiceForwarder(
            address, (parts.hostname or "127.0.0.1", parts.port or 443), stop
        )
    except OSError as exc:
        log.warning("event=no_service address=%s error=%r", address, exc)
        return ""
    forwarder.start()
    return address


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s level=%(levelname)s component=podrunner %(message)s",
    )
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    state = args.state.resolve()
    kube = Kube(args.kubeconfig)
    ca_file = str(kube.api.configuration.ssl_ca_cert or "")
    venv = Path(sys.prefix)
    engines = EngineFinder(state, lambda: start_service(kube.server, args.service_address, stop))
    engine = engines.find()
    ctx = LaunchContext(
        source=ClusterSource(kube, ca_file),
        state=state,
        node=args.node,
        venv=venv,
        repo=Path(__file__).resolve().parents[3],  # the checkout, {repo} in images.yaml
        server=kube.server,
        ca_file=ca_file,
        base=base_env(venv, os.environ),
        images=images.load_images(args.images),
        runtime=args.runtime,
        engine=engine,
        service_host=engines.service_host,
        engines=engines,
    )
    keeper = node.NodeKeeper(kube, args.node, stop)
    _register(keeper, stop)
    keeper.start()
    pvprovisioner.Provisioner(kube, state, stop).start()
    runner = Runner(kube, ctx, stop)
    threading.Thread(target=runner.watch_pods, name="pod-watch", daemon=True).start()
    log.info("event=started node=%s state=%s pid=%s", args.node, state, os.getpid())
    while not stop.wait(1.0):
        pass  # a timed wait keeps the main thread responsive to signals
    log.info("event=stopping node=%s", args.node)
    runner.shutdown()
    if engines.engine is not None:
        engines.engine.remove_all()
    log.info("event=stopped node=%s", args.node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
