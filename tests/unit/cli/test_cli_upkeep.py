"""`retrainer verify --all` (the scrub) and `retrainer retain` on real claim folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from retrainer_cli import __main__ as cli
from retrainer_cli import verify_job
from retrainer_contract import layout, upkeep

MakeVersion = Callable[..., layout.VersionPaths]


def _flip_byte(path: Path, offset: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_verify_all_reports_every_version_ok_when_intact(
    make_version: MakeVersion, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_version("shapes", 1).root
    make_version("shapes", 2)
    message = tmp_path / "termination-log"
    argv = ["verify", "shapes", "--all", "--root", str(root), "--no-remote"]
    code = cli.main([*argv, "--termination-message-path", str(message)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.splitlines() == ["v1: ok", "v2: ok", "OK: shapes: 2 versions verified"]
    report = upkeep.parse_scrub_report(message.read_text())
    assert (report["checked"], report["versions"], report["problems"]) == (2, [1, 2], [])


def test_verify_all_names_the_changed_and_the_missing_copy(
    make_version: MakeVersion, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one, two = make_version("shapes", 1), make_version("shapes", 2)
    _flip_byte(one.training_run)
    two.quick_access.unlink()
    message = tmp_path / "termination-log"
    argv = ["verify", "shapes", "--all", "--root", str(one.root), "--no-remote"]
    assert cli.main([*argv, "--termination-message-path", str(message)]) == 1
    out = capsys.readouterr().out
    assert "  v1 trainingRun shapes/runs/train/retrain_v1/weights/best.pt: sha256 differs" in out
    assert "  v2 quickAccess shapes/runs/train/retrained_v2.pt: missing" in out
    problems = upkeep.parse_scrub_report(message.read_text())["problems"]
    kinds = {(p["version"], p["name"]): p["kind"] for p in problems}
    assert kinds == {(1, "trainingRun"): upkeep.CHANGED, (2, "quickAccess"): upkeep.MISSING}


def test_verify_all_takes_no_version(
    make_version: MakeVersion, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_version("shapes", 1).root
    assert cli.main(["verify", "shapes", "1", "--all", "--root", str(root)]) == 2
    assert "--all checks every version" in capsys.readouterr().err


def test_the_in_cluster_scrub_job_passes_all() -> None:
    job = verify_job.build_verify_job(
        name="v", namespace="ns", model="shapes", version=None, claim="c", image="i",
        s3_endpoint="http://minio:9000", s3_secret="s", no_remote=False, all_versions=True,
    )  # fmt: skip
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "verify", "shapes", "--root", "/data", "--all"
    ]  # fmt: skip


def test_retain_removes_exactly_the_retention_paths_and_keeps_the_metadata(
    make_version: MakeVersion, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    versions = {v: make_version("shapes", v) for v in (1, 2, 3)}
    root = versions[1].root
    before = _files(root)
    message = tmp_path / "termination-log"
    argv = ["retain", "shapes", "1", "3", "--root", str(root)]
    assert cli.main([*argv, "--termination-message-path", str(message)]) == 0
    gone = set()
    for v in (1, 3):
        paths = versions[v]
        gone |= {p for p in before if p in (paths.production, paths.quick_access)}
        gone |= {p for p in before if p.is_relative_to(paths.run_dir)}
        assert paths.metadata.is_file()
    assert _files(root) == before - gone
    out = capsys.readouterr().out
    assert "removed shapes/runs/train/retrain_v3" in out
    report = upkeep.parse_retain_report(message.read_text())
    assert (report["versions"], report["removed"], report["failed"]) == ([1, 3], 6, [])

    # Again: nothing left to remove, and the versions still count as gone.
    assert cli.main([*argv, "--termination-message-path", str(message)]) == 0
    assert upkeep.parse_retain_report(message.read_text())["versions"] == [1, 3]
    assert _files(root) == before - gone


def test_the_in_cluster_scrub_report_reads_as_lines() -> None:
    problem = upkeep.problem(1, "production", "shapes/models/retrained_v1.pt", "missing", "missing")
    text = verify_job._scrub_text(upkeep.scrub_report("shapes", [1, 2], [problem]))
    assert text.splitlines() == [
        "  v1 production shapes/models/retrained_v1.pt: missing",
        "FAILED: shapes: 1 copies failed in 2 versions",
    ]
    assert verify_job._scrub_text("not json") == "not json"
