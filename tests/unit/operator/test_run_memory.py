"""A pass starts from the RetrainJob as the watch or our own last write showed it (no GET), and
writes only if the object is still at that copy's resourceVersion: a copy made stale by another
writer costs one refused write and a read, never a lost update; two processes passing over one
RetrainJob at once lose nothing either. The memory follows the watch in order (an event older
than our own write is not taken), keeps no ended RetrainJob, and lapses a pin whose event the
watch never delivers."""

from __future__ import annotations

import concurrent.futures
import json
import threading
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException
from retrainer_contract import api
from retrainer_operator import kube, reconcile
from retrainer_operator.line_status import Conflict
from retrainer_operator.run_memory import RunMemory


def body(version: str, phase: str = "Pending", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "team",
            "name": "r1",
            "uid": "u1",
            "generation": 1,
            "resourceVersion": version,
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            "annotations": {f"{api.GROUP}/last-handled-configuration": "{}", "mine": "kept"},
        },
        "spec": {"model": "m"},
        "status": {
            "version": 1,
            "jobName": "retrain-m-v1",
            "phase": phase,
            "startTime": "2025-01-01T00:00:00Z",
            **status,
        },
    }


def raw(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


# ---- the memory ------------------------------------------------------------------------------


def test_the_watch_fills_the_memory_without_managed_fields_or_kopfs_copy_of_the_spec() -> None:
    memory = RunMemory()
    memory.seen("team", "r1", body("5"))

    copy = memory.recall("team", "r1")
    assert copy is not None and copy["metadata"]["resourceVersion"] == "5"
    assert "managedFields" not in copy["metadata"]
    assert copy["metadata"]["annotations"] == {"mine": "kept"}
    copy["status"]["phase"] = "changed"  # a copy: the memory is not changed through it
    assert memory.recall("team", "r1")["status"]["phase"] == "Pending"  # type: ignore[index]

    memory.seen("team", "r1", None)  # deleted
    assert memory.recall("team", "r1") is None


def test_an_ended_retrainjob_is_not_kept() -> None:
    memory = RunMemory()
    memory.seen("team", "r1", body("5"))
    ended = body("6", "Succeeded", conditions=[{"type": "Complete", "status": "True"}])
    ended["status"]["conditions"] = [
        {"type": "Complete", "status": "True"},
        {"type": "Verified", "status": "True"},
    ]
    memory.seen("team", "r1", ended)
    assert memory.recall("team", "r1") is None and len(memory) == 0


def test_after_our_write_an_event_of_another_version_puts_the_copy_in_doubt_until_a_read() -> None:
    memory = RunMemory()
    memory.seen("team", "r1", body("5"))
    assert memory.wrote("team", "r1", raw(body("7", "Running"))) == "7"
    memory.seen("team", "r1", body("7", "Running"))  # our write's own event: confirmed
    memory.seen("team", "r1", body("8", "Running"))  # then anyone's newer ones count
    assert memory.recall("team", "r1")["metadata"]["resourceVersion"] == "8"  # type: ignore[index]

    # Delivered after our write's answer: older (in flight) or newer (Kopf skipped ours).
    memory.wrote("team", "r1", raw(body("10", "Running")))
    memory.seen("team", "r1", body("9"))
    assert memory.recall("team", "r1") is None
    memory.seen("team", "r1", body("11", "Running"))  # not taken while in doubt
    assert memory.recall("team", "r1") is None

    memory.known("team", "r1", body("11", "Running"))  # a pass read it
    assert memory.recall("team", "r1")["metadata"]["resourceVersion"] == "11"  # type: ignore[index]


def test_a_refused_write_forgets_the_copy_and_events_wait_for_a_read() -> None:
    memory = RunMemory()
    memory.seen("team", "r1", body("5"))
    memory.forget("team", "r1")
    memory.seen("team", "r1", body("4"))  # an older event still in flight
    assert memory.recall("team", "r1") is None


def test_an_ended_write_keeps_older_events_out() -> None:
    memory = RunMemory()
    memory.seen("team", "r1", body("5"))
    ended = body("7", "Succeeded")
    ended["status"]["conditions"] = [
        {"type": "Complete", "status": "True"},
        {"type": "Verified", "status": "True"},
    ]
    memory.wrote("team", "r1", raw(ended))
    memory.seen("team", "r1", body("6"))  # older, not ended
    assert memory.recall("team", "r1") is None


# ---- passes against an apiserver that refuses a stale write ----------------------------------


class Raw:
    """What the client returns with _preload_content=False."""

    def __init__(self, obj: Any) -> None:
        self.data = json.dumps(obj).encode()


class Custom:
    """The CustomObjectsApi calls Cluster makes for RetrainJobs, over one stored object: a
    write naming a resourceVersion other than the stored one is refused (409), as the
    apiserver does; every write moves the version on."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.reads = 0
        self.conflicts = 0
        self.writes: list[str | None] = []  # the resourceVersion each write was guarded by
        self._guard = threading.Lock()  # the apiserver serializes writes of one object

    def get_namespaced_custom_object(self, *_: Any, **__: Any) -> Raw:
        self.reads += 1
        with self._guard:
            return Raw(self.obj)

    def _write(self, patch: dict[str, Any], part: str) -> Raw:
        with self._guard:
            guard = (patch.get("metadata") or {}).get("resourceVersion")
            self.writes.append(guard)
            if guard is not None and guard != self.obj["metadata"]["resourceVersion"]:
                self.conflicts += 1
                raise ApiException(status=409, reason="Conflict")
            if part == "status":
                self.obj["status"] = {**self.obj["status"], **patch["status"]}
            else:
                notes = self.obj["metadata"].setdefault("annotations", {})
                notes.update(patch["metadata"]["annotations"])
            version = int(self.obj["metadata"]["resourceVersion"]) + 1
            self.obj["metadata"]["resourceVersion"] = str(version)
            return Raw(self.obj)

    def patch_namespaced_custom_object_status(self, *args: Any, **_: Any) -> Raw:
        return self._write(args[5], "status")

    def patch_namespaced_custom_object(self, *args: Any, **_: Any) -> Raw:
        return self._write(args[5], "metadata")


class Cluster(kube.Cluster):
    """The real Cluster's RetrainJob calls over Custom; a running Job with a running pod."""

    def __init__(self, custom: Custom) -> None:
        super().__init__(kubernetes.client.ApiClient())
        self.custom = custom  # type: ignore[assignment]

    def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return {"metadata": {"name": name}, "spec": {}, "status": {"active": 1, "ready": 1}}

    def list_job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        return [{"metadata": {"name": "p"}, "status": {"phase": "Running"}}]

    def emit_event(self, *args: Any, **kwargs: Any) -> None:
        pass


class Mlflow:
    def find_run(self, *args: Any) -> None:
        return None


def deps(cluster: Cluster, memory: RunMemory | None = None) -> reconcile.Deps:
    return reconcile.Deps(
        config=None,  # type: ignore[arg-type]
        cluster=cluster,
        mlflow=Mlflow(),  # type: ignore[arg-type]
        store=None,
        runs=memory or RunMemory(),
    )


def test_a_pass_from_the_memory_reads_nothing_and_writes_guarded_by_the_copys_version() -> None:
    custom = Custom(body("5"))
    memory = RunMemory()
    memory.seen("team", "r1", body("5"))

    assert reconcile.reconcile(deps(Cluster(custom), memory), "team", "r1") == "Running"

    assert custom.reads == 0 and custom.writes == ["5"]
    # The write's answer is where the next pass starts.
    assert memory.recall("team", "r1")["status"]["phase"] == "Running"  # type: ignore[index]
    assert memory.recall("team", "r1")["metadata"]["resourceVersion"] == "6"  # type: ignore[index]


def test_without_a_copy_a_pass_reads_and_writes_unguarded_as_before() -> None:
    custom = Custom(body("5"))
    assert reconcile.reconcile(deps(Cluster(custom)), "team", "r1") == "Running"
    assert custom.reads == 1 and custom.writes == [None]


def test_a_copy_another_writer_made_stale_costs_one_refused_write_and_loses_nothing() -> None:
    custom = Custom(body("5"))
    memory = RunMemory()
    memory.seen("team", "r1", body("5"))
    # Another writer (a person, the other replica) writes after our copy was taken, and its
    # event has not reached this process yet.
    custom._write({"status": {"startTime": "2026-01-01T00:00:00Z"}}, "status")

    assert reconcile.reconcile(deps(Cluster(custom), memory), "team", "r1") == "Running"

    assert custom.conflicts == 1 and custom.reads == 1
    assert custom.writes == [None, "5", None]  # theirs, ours refused, ours from the read
    assert custom.obj["status"]["startTime"] == "2026-01-01T00:00:00Z"  # their write kept
    assert custom.obj["status"]["phase"] == "Running"


def test_annotations_and_status_of_one_pass_are_both_guarded() -> None:
    custom = Custom(body("5"))
    memory = RunMemory()
    memory.seen("team", "r1", body("5"))
    cluster = Cluster(custom)

    answer = cluster.patch_annotations("team", "r1", {"a": "1"}, "5")
    version = memory.wrote("team", "r1", answer)
    cluster.patch_status("team", "r1", {"phase": "Running"}, version)
    with pytest.raises(Conflict):
        cluster.patch_status("team", "r1", {"phase": "Pending"}, "5")
    assert custom.writes == ["5", "6", "5"]


def test_two_processes_passing_over_one_retrainjob_at_once_lose_nothing() -> None:
    """Two replicas' memories, each with the same copy; their passes race, and a third writer
    writes in between. Every write lands on the version it was computed from."""
    custom = Custom(body("5"))
    memories = [RunMemory(), RunMemory()]
    for memory in memories:
        memory.seen("team", "r1", body("5"))
    custom._write({"status": {"startTime": "2026-01-01T00:00:00Z"}}, "status")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        phases = list(
            pool.map(
                lambda i: reconcile.reconcile(deps(Cluster(custom), memories[i % 2]), "team", "r1"),
                range(8),
            )
        )

    assert phases == ["Running"] * 8
    assert custom.obj["status"]["startTime"] == "2026-01-01T00:00:00Z"
    # Guarded writes that landed were on the version current then: refused otherwise.
    assert custom.conflicts >= 1


def test_a_modelline_write_that_gave_up_is_not_taken_for_a_stale_copy() -> None:
    """Only a refused RetrainJob write reruns the pass: a ModelLine's Conflict (its ledger
    write gave up) propagates as before, with no read of the RetrainJob."""

    class LedgerGaveUp(Cluster):
        def list_job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
            raise Conflict("ModelLine team/m: gave up after 60 conflicting writes")

    custom = Custom(body("5"))
    memory = RunMemory()
    memory.seen("team", "r1", body("5"))
    with pytest.raises(Conflict) as raised:
        reconcile.reconcile(deps(LedgerGaveUp(custom), memory), "team", "r1")
    assert not isinstance(raised.value, kube.RetrainJobChanged)
    assert custom.reads == 0 and custom.writes == []
    assert memory.recall("team", "r1") is not None  # the copy was not in question
