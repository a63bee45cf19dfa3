"""`retrainer retain` re-reads the champion right before removing: a version promoted (or made
the rollback target) after retention listed it keeps its claim copies.

Fault point: `retain._listed`, between the listing the Job was built with and the re-read,
where the test moves the champion (a promotion while the Job waited for a node)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from retrainer_cli import __main__ as cli
from retrainer_cli import kube, retain
from retrainer_contract import layout, upkeep

MakeVersion = Callable[..., layout.VersionPaths]


class Lines:
    """The cluster as retain sees it: one ModelLine whose champion a test can move."""

    def __init__(self, champion: dict[str, Any]) -> None:
        self.champion = champion
        self.reads = 0

    def get_modelline(self, api: object, namespace: str, name: str) -> dict[str, Any]:
        self.reads += 1
        assert (namespace, name) == ("team-a", "shapes")
        return {"metadata": {"name": name}, "status": {"champion": dict(self.champion)}}


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Lines:
    found = Lines({"version": 4, "previous": 3})
    monkeypatch.setattr(kube, "api_client", lambda context=None: object())
    monkeypatch.setattr(kube, "get_modelline", found.get_modelline)
    return found


def gone(paths: layout.VersionPaths) -> bool:
    return not paths.production.exists() and not paths.run_dir.exists()


def test_a_champion_moved_after_the_listing_keeps_its_copies(
    make_version: MakeVersion,
    tmp_path: Path,
    lines: Lines,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stored = {v: make_version("shapes", v) for v in range(1, 5)}
    listed: list[list[int]] = []

    def promoted_meanwhile(model: str, versions: list[int]) -> None:
        listed.append(versions)  # what the Job was built to remove: 1 and 2
        lines.champion = {"version": 2, "previous": 4}  # fault point: v2 promoted now

    monkeypatch.setattr(retain, "_listed", promoted_meanwhile)
    message = tmp_path / "termination-log"
    argv = ["retain", "shapes", "1-2", "--root", str(stored[1].root), "-n", "team-a"]
    assert cli.main([*argv, "--termination-message-path", str(message)]) == 0

    assert stored[2].production.is_file() and stored[2].training_run.is_file()
    assert gone(stored[1])
    assert listed == [[1, 2]] and lines.reads == 1
    report = upkeep.parse_retain_report(message.read_text())
    assert (report["versions"], report["protected"]) == ([1], [2])
    assert "kept v2" in capsys.readouterr().out


def test_nothing_is_removed_when_the_champion_cannot_be_read(
    make_version: MakeVersion, tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = make_version("shapes", 1)

    def unreachable(api: object, namespace: str, name: str) -> dict[str, Any]:
        raise kube.CliError("connection refused", exit_code=1)

    monkeypatch.setattr(kube, "get_modelline", unreachable)
    message = tmp_path / "termination-log"
    argv = ["retain", "shapes", "1", "--root", str(paths.root), "-n", "team-a"]
    assert cli.main([*argv, "--termination-message-path", str(message)]) == 1
    assert paths.production.is_file() and paths.run_dir.is_dir()
    report = upkeep.parse_retain_report(message.read_text())
    assert report["versions"] == [] and "champion" in report["failed"][0]["error"]


def test_versions_are_taken_as_ranges_and_bad_ones_refused(
    make_version: MakeVersion, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_version("shapes", 1).root
    for version in (2, 3, 5):
        make_version("shapes", version)
    assert cli.main(["retain", "shapes", "1-3,5", "--root", str(root)]) == 0
    assert "claim copies of 4 versions gone" in capsys.readouterr().out
    for bad in ("3-1", "x", "1,,2"):
        with pytest.raises(SystemExit) as refused:
            cli.main(["retain", "shapes", bad, "--root", str(root)])
        assert refused.value.code == 2, bad
