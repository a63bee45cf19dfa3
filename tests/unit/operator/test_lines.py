"""The line reconciler's pure parts: the runs it starts and the history it trims."""

from __future__ import annotations

import datetime
from typing import Any

from retrainer_contract import api
from retrainer_operator import line_status, lines, triggers

LINE: dict[str, Any] = {
    "metadata": {"name": "shapes", "namespace": "team", "uid": "line-uid"},
    "spec": {
        "template": {"baseModel": {"version": "latest"}, "dataset": {"uri": "s3://d/x"}},
        "corrections": {"uri": "s3://c/batch", "minNew": 3},
        "historyLimits": {"succeeded": 1, "failed": 1},
    },
}


def test_a_run_is_the_template_with_the_line_as_model_owned_by_the_line() -> None:
    slot = datetime.datetime(2026, 11, 30, 3, tzinfo=datetime.UTC)
    body = lines.run_body(LINE, "schedule", "202611300300", slot)
    assert body["metadata"]["name"] == "shapes-schedule-202611300300"
    assert body["spec"]["model"] == "shapes"
    assert body["spec"]["corrections"] == {"uri": "s3://c/batch"}  # the watched folder
    assert body["metadata"]["labels"][api.LABEL_TRIGGER] == "schedule"
    assert body["metadata"]["annotations"][api.SCHEDULED_TIME_ANNOTATION] == "2026-11-30T03:00:00Z"
    (owner,) = body["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ModelLine", "line-uid", True)
    assert "model" not in LINE["spec"]["template"]  # the template is not changed


def test_the_same_slot_always_gives_the_same_name() -> None:
    names = {lines.run_body(LINE, "schedule", "202611300300")["metadata"]["name"] for _ in range(3)}
    assert len(names) == 1


def run(name: str, phase: str, done: str, owned: bool = True) -> dict[str, Any]:
    refs = [{"uid": "line-uid"}] if owned else []
    return {
        "metadata": {"name": name, "ownerReferences": refs, "creationTimestamp": done},
        "status": {"phase": phase, "completionTime": done},
    }


def test_history_keeps_the_newest_finished_runs_of_the_line_only() -> None:
    runs = [
        run("s1", "Succeeded", "2026-11-01T00:00:00Z"),
        run("s2", "Succeeded", "2026-11-02T00:00:00Z"),
        run("f1", "Failed", "2026-11-01T00:00:00Z"),
        run("f2", "Failed", "2026-11-03T00:00:00Z"),
        run("mine", "Succeeded", "2026-10-01T00:00:00Z", owned=False),  # applied by a person
        run("r1", "Running", "2026-10-01T00:00:00Z"),
    ]
    assert lines.history_to_delete(runs, LINE) == ["f1", "s1"]


class Listed:
    def __init__(self, name: str) -> None:
        self.object_name = name


class Store:
    def __init__(self, names: list[str], log: bytes = b"") -> None:
        self.names, self.log = names, log

    def list_objects(
        self, bucket_name: str, prefix: str | None = None, recursive: bool = False
    ) -> Any:
        return [Listed(f"{prefix}{n}") for n in self.names]

    def get_object(self, bucket_name: str, object_name: str) -> Any:
        log = self.log

        class Response:
            def read(self) -> bytes:
                return log

            def close(self) -> None: ...

            def release_conn(self) -> None: ...

        return Response()


def test_corrections_are_counted_by_sample_with_deletions_from_the_log() -> None:
    store = Store(
        [
            "labels/train/a.txt",
            "images/train/a.jpg",  # the same sample as its label
            "labels/val/b.txt",
            "corrections.json",
            "README.md",
        ],
        b'[{"image": "train/c.jpg", "action": "delete"}]',
    )
    assert triggers.listed_keys(store, "s3://c/batch") == {"train/a", "val/b", "train/c"}


def test_pending_is_what_the_last_verified_version_did_not_apply() -> None:
    applied = {"applied": [{"image": "train/a.jpg", "action": "replace"}]}
    assert triggers.applied_keys(applied) == {"train/a"}
    assert triggers.applied_keys(None) == set()
    assert triggers.fingerprint(["b", "a"]) == triggers.fingerprint(["a", "b"])


def test_the_status_patch_removes_what_is_gone_and_merges_nested_objects() -> None:
    old = {"scrub": {"jobName": "j", "time": "t0"}, "nextRunTime": "a", "kept": 1}
    new = {"scrub": {"time": "t1"}, "kept": 1, "pendingCorrections": 3}
    assert line_status.merge_patch(old, new) == {
        "scrub": {"jobName": None, "time": "t1"},
        "nextRunTime": None,
        "pendingCorrections": 3,
    }
    assert line_status.merge_patch(new, new) == {}
