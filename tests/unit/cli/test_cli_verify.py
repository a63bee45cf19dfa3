"""`retrainer verify` on real claim folders: passes when intact, names the broken copy otherwise."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from retrainer_cli import __main__ as cli
from retrainer_cli import verify_checks
from retrainer_contract import layout

MakeVersion = Callable[..., layout.VersionPaths]


def _flip_byte(path: Path, offset: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _rows(out: str) -> dict[str, str]:
    """CHECK -> the whole table line."""
    return {line.split()[0]: line for line in out.splitlines()[1:] if line and " " in line}


def test_intact_version_passes_every_local_check(
    make_version: MakeVersion, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = make_version("shapes", 1)
    code = cli.main(["verify", "shapes", "1", "--root", str(paths.root), "--no-remote"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = _rows(out)
    for name in ("production", "quickAccess", "trainingRun", "metadata", "manifest"):
        assert " ok " in rows[name], rows[name]
    assert "sha256 matches production and the manifest" in rows["quickAccess"]
    assert "not checked (--no-remote)" in rows["mlflow"]
    assert "OK: shapes v1 verified" in out


def test_flipped_byte_in_one_copy_fails_with_a_row_naming_it(
    make_version: MakeVersion, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = make_version("shapes", 1)
    _flip_byte(paths.quick_access)
    code = cli.main(["verify", "shapes", "1", "--root", str(paths.root), "--no-remote"])
    out = capsys.readouterr().out
    assert code == 1
    rows = _rows(out)
    assert "FAILED" in rows["quickAccess"]
    assert "sha256 differs from production" in rows["quickAccess"]
    assert " ok " in rows["production"] and " ok " in rows["trainingRun"]
    assert "FAILED: shapes v1: 1 of 8 checks failed (quickAccess)" in out


def test_flipped_byte_in_production_is_caught_by_the_manifest(
    make_version: MakeVersion, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = make_version("shapes", 1)
    _flip_byte(paths.production)
    code = cli.main(["verify", "shapes", "--root", str(paths.root), "--no-remote"])
    rows = _rows(capsys.readouterr().out)
    assert code == 1
    assert "sha256 differs from the manifest" in rows["production"]


def test_latest_is_the_highest_version_number_not_the_last_name(
    make_version: MakeVersion, capsys: pytest.CaptureFixture[str]
) -> None:
    for version in (2, 10, 9):
        paths = make_version("shapes", version)
    assert verify_checks.latest_version(paths.root, "shapes") == 10
    assert cli.main(["verify", "shapes", "--root", str(paths.root), "--no-remote"]) == 0
    assert "OK: shapes v10 verified" in capsys.readouterr().out


def test_latest_of_an_empty_model_line_is_none(tmp_path: Path) -> None:
    (tmp_path / "shapes" / "models").mkdir(parents=True)
    (tmp_path / "shapes" / "models" / "retrained_v3_metadata.json").write_text("{}")
    assert verify_checks.latest_version(tmp_path, "shapes") is None
    assert verify_checks.latest_version(tmp_path, "other") is None


def test_unknown_model_line_exits_1_naming_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["verify", "nope", "--root", str(tmp_path), "--no-remote"])
    assert code == 1
    assert f"expected {tmp_path / 'nope'}/" in capsys.readouterr().err


def test_metadata_with_another_version_fails(
    make_version: MakeVersion, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = make_version("shapes", 2, manifest=False)
    paths.metadata.write_text(json.dumps({"version": 1}))
    assert cli.main(["verify", "shapes", "2", "--root", str(paths.root), "--no-remote"]) == 1
    rows = _rows(capsys.readouterr().out)
    assert "records version 1, expected 2" in rows["metadata"]
    assert "not present" in rows["manifest"] and "skipped" in rows["manifest"]


def test_missing_last_checkpoint_fails_the_training_run_check(
    make_version: MakeVersion, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = make_version("shapes", 1)
    paths.last_checkpoint.unlink()
    assert cli.main(["verify", "shapes", "1", "--root", str(paths.root), "--no-remote"]) == 1
    assert "FAILED" in _rows(capsys.readouterr().out)["trainingRun/last.pt"]


def test_remote_check_without_an_endpoint_fails_and_says_how_to_fix(
    make_version: MakeVersion, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
    paths = make_version("shapes", 1)
    assert cli.main(["verify", "shapes", "1", "--root", str(paths.root)]) == 1
    mlflow = _rows(capsys.readouterr().out)["mlflow"]
    assert "FAILED" in mlflow and "--s3-endpoint" in mlflow and "MLFLOW_S3_ENDPOINT_URL" in mlflow


def test_json_output_has_the_status_checks_shape(
    make_version: MakeVersion, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = make_version("shapes", 1)
    _flip_byte(paths.training_run)
    code = cli.main(
        ["verify", "shapes", "1", "--root", str(paths.root), "--no-remote", "-o", "json"]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 1
    assert result["verified"] is False and result["version"] == 1
    failed = [c["name"] for c in result["checks"] if c["ok"] is False]
    assert failed == ["trainingRun"]
    assert set(result["checks"][0]) == {"name", "uri", "ok", "by", "message"}


def test_termination_message_gets_the_table_tail(
    make_version: MakeVersion, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = make_version("shapes", 1)
    message = tmp_path / "termination-log"
    args = ["verify", "shapes", "--root", str(paths.root), "--no-remote"]
    assert cli.main([*args, "--termination-message-path", str(message)]) == 0
    text = message.read_text()
    assert text.strip() == capsys.readouterr().out.strip()
    assert len(text.encode()) <= 4096


def test_metadata_naming_other_weights_fails(
    make_version: MakeVersion, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = make_version("shapes", 1, manifest=False)
    paths.metadata.write_text(json.dumps({"version": 1, "weights": {"sha256": "0" * 64}}))
    assert cli.main(["verify", "shapes", "1", "--root", str(paths.root), "--no-remote"]) == 1
    assert "records weights sha256 000000000000…" in _rows(capsys.readouterr().out)["metadata"]
