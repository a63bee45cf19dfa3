"""Version N's run folder has one owner: recorded first, exclusively, and never taken over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from retrainer_contract import documents, layout
from retrainer_trainer import store
from retrainer_trainer.errors import BadInput, VersionConflict


def paths(tmp_path: Path, version: int = 1) -> layout.VersionPaths:
    return layout.VersionPaths.for_version(tmp_path, "shapes", version)


def owner(uid: str) -> dict[str, str]:
    return documents.owner(uid=uid, name=f"job-{uid}", namespace="ns")


def test_the_first_retrainjob_records_itself_and_may_run_again(tmp_path: Path) -> None:
    p = paths(tmp_path)
    store.claim_version(p, owner("a"))
    assert json.loads(p.owner.read_text())["retrainJob"]["uid"] == "a"
    store.claim_version(p, owner("a"))  # a retried pod of the same RetrainJob goes on


def test_another_retrainjob_gets_a_version_conflict_naming_both(tmp_path: Path) -> None:
    p = paths(tmp_path)
    store.claim_version(p, owner("a"))
    with pytest.raises(VersionConflict) as error:
        store.claim_version(p, owner("b"))
    assert "uid a" in str(error.value) and "uid b" in str(error.value)
    assert isinstance(error.value, BadInput) and error.value.reason == "VersionConflict"
    assert json.loads(p.owner.read_text())["retrainJob"]["uid"] == "a"


def test_a_version_written_before_ownership_records_is_owned_by_its_metadata(
    tmp_path: Path,
) -> None:
    p = paths(tmp_path)
    p.models_dir.mkdir(parents=True)
    p.metadata.write_text(json.dumps({"version": 1, "retrainJob": owner("old")}))
    with pytest.raises(VersionConflict, match="uid old"):
        store.claim_version(p, owner("new"))
    assert not p.owner.exists()
    store.claim_version(p, owner("old"))


def test_an_unreadable_ownership_record_is_never_overwritten(tmp_path: Path) -> None:
    p = paths(tmp_path)
    p.run_dir.mkdir(parents=True)
    p.owner.write_text("{not json")
    with pytest.raises(VersionConflict, match="cannot read who owns it"):
        store.claim_version(p, owner("a"))
    assert p.owner.read_text() == "{not json"


def test_of_two_racing_pods_the_one_that_loses_the_exclusive_create_conflicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = paths(tmp_path)
    real = store._recorded_owner
    calls = {"n": 0}

    def winner_writes_between(paths_: layout.VersionPaths) -> str:
        # Fault point: the other pod creates its record right after our first read.
        calls["n"] += 1
        if calls["n"] == 1:
            paths_.run_dir.mkdir(parents=True, exist_ok=True)
            paths_.owner.write_text(json.dumps({"retrainJob": owner("winner")}))
            return ""
        return real(paths_)

    monkeypatch.setattr(store, "_recorded_owner", winner_writes_between)
    with pytest.raises(VersionConflict, match="uid winner"):
        store.claim_version(p, owner("loser"))
