"""A hostPath PersistentVolume provisioner for the local world.

There is no cloud disk here, so every PVC that waits for a volume gets a hostPath PV under
`<state>/volumes/<namespace>/<claim>/`, pre-bound to it through claimRef; the real PV
binder in kube-controller-manager then binds the pair. The folder outlives pods (and, with
reclaim policy Retain, the claim), so data persists like a real volume.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from retrainer_world.kubelet.kube import ApiException, Kube, watch_forever

__all__ = [
    "PROVISIONED_BY",
    "Provisioner",
    "claim_folder",
    "namespace_folder",
    "pv_for_claim",
    "pv_name",
    "wants_volume",
]

PROVISIONED_BY = "retrainer.dev/provisioned-by"
PROVISIONER = "retrainer-podrunner"
Obj = dict[str, Any]
log = logging.getLogger("retrainer_world.kubelet")


def pv_name(claim: Obj) -> str:
    return f"pvc-{claim['metadata']['uid']}"


def namespace_folder(state: Path, namespace: str) -> Path:
    """Where the claims of `namespace` keep their data on this host (it outlives them)."""
    return state / "volumes" / namespace


def claim_folder(state: Path, namespace: str, claim: str) -> Path:
    return namespace_folder(state, namespace) / claim


def wants_volume(claim: Obj) -> bool:
    """A claim still Pending with no volume chosen (the ones a provisioner serves)."""
    status = claim.get("status") or {}
    spec = claim.get("spec") or {}
    return (
        status.get("phase", "Pending") == "Pending"
        and not spec.get("volumeName")
        and not claim["metadata"].get("deletionTimestamp")
    )


def pv_for_claim(claim: Obj, state: Path) -> Obj:
    """The hostPath PV that satisfies `claim` exactly (size, modes, class, selector labels)."""
    meta = claim["metadata"]
    spec = claim.get("spec") or {}
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    labels = {PROVISIONED_BY: PROVISIONER}
    # A claim with a label selector only binds PVs carrying those labels.
    labels.update(((spec.get("selector") or {}).get("matchLabels")) or {})
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": pv_name(claim),
            "labels": labels,
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": spec.get("storageClassName") or "",
            "hostPath": {
                "path": str(claim_folder(state, meta["namespace"], meta["name"])),
                "type": "DirectoryOrCreate",
            },
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


class Provisioner:
    """Watches PVCs: provisions for waiting ones, drops our PV object when its claim goes."""

    def __init__(self, kube: Kube, state: Path, stop: threading.Event) -> None:
        self.kube = kube
        self.state = state
        self.stop = stop

    def on_event(self, type_: str, claim: Obj) -> None:
        try:
            if type_ == "DELETED":
                self.release(claim)
            elif wants_volume(claim):
                self.provision(claim)
        except Exception as exc:  # one bad claim must not stop the watch
            meta = claim.get("metadata", {})
            log.warning(
                "event=provision_failed namespace=%s claim=%s error=%r",
                meta.get("namespace"),
                meta.get("name"),
                exc,
            )

    def provision(self, claim: Obj) -> None:
        pv = pv_for_claim(claim, self.state)
        Path(pv["spec"]["hostPath"]["path"]).mkdir(parents=True, exist_ok=True)
        try:
            self.kube.create("/api/v1/persistentvolumes", pv)
        except ApiException as exc:
            if exc.status == 409:
                return  # provisioned already (a relist replays the claim)
            raise
        meta = claim["metadata"]
        log.info(
            "event=pv_provisioned namespace=%s claim=%s pv=%s path=%s",
            meta["namespace"],
            meta["name"],
            pv["metadata"]["name"],
            pv["spec"]["hostPath"]["path"],
        )

    def release(self, claim: Obj) -> None:
        """Delete our PV object once its claim is gone; the folder stays (Retain)."""
        name = pv_name(claim)
        pv = self.kube.get_optional(self.kube.core.read_persistent_volume, name)
        if pv is None or (pv["metadata"].get("labels") or {}).get(PROVISIONED_BY) != PROVISIONER:
            return
        try:
            self.kube.core.delete_persistent_volume(name, _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise
        log.info("event=pv_released pv=%s", name)

    def run(self) -> None:
        watch_forever(
            self.kube,
            self.kube.core.list_persistent_volume_claim_for_all_namespaces,
            self.on_event,
            self.stop,
            what="persistentvolumeclaims",
        )

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="pv-provisioner", daemon=True)
        thread.start()
        return thread
