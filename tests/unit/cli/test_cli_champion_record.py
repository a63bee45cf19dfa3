"""`retrainer promote`/`rollback` bookkeeping: the champion write survives concurrent writers."""

from __future__ import annotations

from typing import Any

import pytest
from retrainer_cli import champion as command
from retrainer_cli import kube
from retrainer_contract import champion


class Lines:
    """A ModelLine whose resourceVersion moves under the CLI `conflicts` times."""

    def __init__(self, conflicts: int) -> None:
        self.conflicts = conflicts
        self.rv = 1
        self.status: dict[str, Any] = {"champion": {"version": 1}, "latestVerified": 2}
        self.patches: list[dict[str, Any]] = []

    def get(self, api: Any, namespace: str, name: str) -> dict[str, Any]:
        meta = {"name": name, "namespace": namespace, "uid": "u", "resourceVersion": str(self.rv)}
        return {"metadata": meta, "status": dict(self.status)}

    def patch(
        self, api: Any, namespace: str, name: str, status: dict[str, Any], rv: str
    ) -> dict[str, Any]:
        if self.conflicts:
            self.conflicts -= 1
            self.rv += 1  # the operator wrote meanwhile
            self.status["latestVerified"] += 1
            raise kube.Conflict("the object has been modified")
        assert rv == str(self.rv)
        self.patches.append(status)
        self.status.update(status)
        return self.get(api, namespace, name)


def test_a_conflict_rereads_and_writes_only_the_champion(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = Lines(conflicts=2)
    monkeypatch.setattr(kube, "get_modelline", lines.get)
    monkeypatch.setattr(kube, "patch_modelline_status", lines.patch)
    updated, old = command.record(None, "ns", "shapes", 2, champion.PROMOTED_BY_USER, {}, 1)  # type: ignore[arg-type]
    assert old == {"version": 1}
    assert [list(p) for p in lines.patches] == [["champion"]]
    assert updated["status"]["champion"]["version"] == 2
    assert updated["status"]["champion"]["previous"] == 1
    assert updated["status"]["latestVerified"] == 4  # the operator's writes are kept


def test_endless_conflicts_give_up_with_exit_code_1(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = Lines(conflicts=100)
    monkeypatch.setattr(kube, "get_modelline", lines.get)
    monkeypatch.setattr(kube, "patch_modelline_status", lines.patch)
    with pytest.raises(kube.CliError) as error:
        command.record(None, "ns", "shapes", 2, champion.PROMOTED_BY_USER, {}, 1)  # type: ignore[arg-type]
    assert error.value.exit_code == 1 and "kept changing" in str(error.value)


def test_a_champion_moved_after_it_was_read_refuses_the_move(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Read v1 before the verify Job; the operator crowned v3 while the Job ran.
    lines = Lines(conflicts=0)
    lines.status["champion"] = {"version": 3}
    monkeypatch.setattr(kube, "get_modelline", lines.get)
    monkeypatch.setattr(kube, "patch_modelline_status", lines.patch)
    with pytest.raises(kube.CliError) as error:
        command.record(None, "ns", "shapes", 2, champion.PROMOTED_BY_USER, {}, 1)  # type: ignore[arg-type]
    assert error.value.exit_code == 1 and "compared with v1, but the champion is now v3" in str(
        error.value
    )
    assert lines.patches == []


def test_promote_takes_a_version_and_rollback_none() -> None:
    from retrainer_cli import __main__ as cli

    parser = cli.build_parser()
    assert parser.parse_args(["promote", "shapes", "3", "-n", "a"]).version == 3
    assert parser.parse_args(["rollback", "shapes"]).func is command.rollback
    with pytest.raises(SystemExit):
        parser.parse_args(["promote", "shapes"])
