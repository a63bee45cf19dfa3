"""Which versions the scrub (`retrainer verify --all`) checks: every version stored whole,
known from evidence that survives the deletion of any one copy, never from the production copy
alone. Fault point: a deleted object (the production copy, or every claim copy)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from retrainer_cli import __main__ as cli
from retrainer_cli import verify_all
from retrainer_cli.verify_checks import VerifyRow
from retrainer_contract import documents, layout, upkeep

MakeVersion = Callable[..., layout.VersionPaths]


def scrub(root: Path, tmp_path: Path, *, expected: str = "") -> tuple[int, dict[str, object]]:
    """Run the scrub as the Job does (the operator's expected versions in the environment)."""
    message = tmp_path / "termination-log"
    argv = ["verify", "shapes", "--all", "--root", str(root), "--no-remote"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RETRAINER_SCRUB_VERSIONS", expected)  # upkeep.VERSIONS_ENV
        code = cli.main([*argv, "--termination-message-path", str(message)])
    return code, upkeep.parse_scrub_report(message.read_text())


def mark_verified(paths: layout.VersionPaths) -> None:
    """The manifest as the trainer leaves a verified version: verification.verified true."""
    manifest = json.loads(paths.manifest.read_text())
    manifest["verification"] = {"verified": True, "checks": []}
    paths.manifest.write_text(json.dumps(manifest))


def test_a_deleted_production_copy_is_reported_missing_not_intact(
    make_version: MakeVersion, tmp_path: Path
) -> None:
    one, two = make_version("shapes", 1), make_version("shapes", 2)
    two.production.unlink()  # fault point: the production copy deleted

    code, report = scrub(one.root, tmp_path)

    assert code == 1
    assert report["checked"] == 2
    problems = report["problems"]
    assert isinstance(problems, list)
    assert [(p["version"], p["name"], p["kind"]) for p in problems] == [
        (2, layout.PRODUCTION, upkeep.MISSING)
    ]


@pytest.mark.parametrize("lost", ["production", "manifest", "metadata", "quick_access"])
def test_a_verified_version_is_listed_whichever_one_copy_is_deleted(
    make_version: MakeVersion, lost: str
) -> None:
    paths = make_version("shapes", 3)
    mark_verified(paths)
    getattr(paths, lost).unlink()
    assert verify_all.stored_versions(paths.root, "shapes") == [3]


def test_a_version_the_operator_expects_is_checked_with_nothing_left_on_the_claim(
    make_version: MakeVersion, tmp_path: Path
) -> None:
    root = make_version("shapes", 1).root
    code, report = scrub(root, tmp_path, expected="1-2")  # v2: every claim copy gone
    assert code == 1
    assert report["checked"] == 2
    problems = report["problems"]
    assert isinstance(problems, list)
    assert {p["version"] for p in problems} == {2}
    assert {p["kind"] for p in problems} <= {upkeep.MISSING, upkeep.UNREADABLE}
    assert (2, layout.PRODUCTION, upkeep.MISSING) in {
        (p["version"], p["name"], p["kind"]) for p in problems
    }


def test_a_retained_version_and_one_still_training_are_not_damage(
    make_version: MakeVersion, tmp_path: Path
) -> None:
    retained, training = make_version("shapes", 1), make_version("shapes", 2, manifest=False)
    for path in (retained.production, retained.quick_access):
        path.unlink()
    for path in sorted(retained.run_dir.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    retained.run_dir.rmdir()  # what retention leaves: the metadata file only
    for path in (training.production, training.quick_access, training.metadata):
        path.unlink()  # what a run still training has: its run folder only
    make_version("shapes", 3)

    code, report = scrub(retained.root, tmp_path)
    assert (code, report["checked"], report["versions"], report["problems"]) == (0, 1, [3], [])


def test_the_termination_message_of_ten_thousand_damaged_versions_fits_four_kib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = layout.VersionPaths.for_version(tmp_path, "shapes", 1).models_dir
    models.mkdir(parents=True)
    for version in range(1, 10_001):
        (models / f"retrained_v{version}.pt").touch()

    def changed(root: Path, model: str, version: int, remote: object) -> list[VerifyRow]:
        where = str(root / model / "runs" / "train" / f"retrain_v{version}" / "weights")
        return [VerifyRow(layout.TRAINING_RUN, where, False, "sha256 differs from production")]

    monkeypatch.setattr(verify_all, "verify_version", changed)
    monkeypatch.setenv("RETRAINER_SCRUB_VERSIONS", "")
    message = tmp_path / "termination-log"
    argv = ["verify", "shapes", "--all", "--root", str(tmp_path), "--no-remote"]
    assert cli.main([*argv, "--termination-message-path", str(message)]) == 1

    written = message.read_bytes()
    assert len(written) <= documents.TERMINATION_LIMIT
    report = upkeep.parse_scrub_report(written.decode())
    assert report["checked"] == 10_000 and report["versions"] == list(range(1, 10_001))
    assert len(report["problems"]) + report["omitted"] == 10_000
