"""The scrub and retention reports fit a termination message, and parse back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from retrainer_contract import documents, layout, upkeep


def test_a_scrub_report_with_many_problems_fits_four_kib_and_counts_the_rest() -> None:
    problems = [
        upkeep.problem(v, "trainingRun", f"shapes/runs/train/retrain_v{v}/weights/best.pt",
                       "sha256 differs from production: " + "x" * 400, upkeep.CHANGED)
        for v in range(1, 200)
    ]  # fmt: skip
    text = upkeep.scrub_report("shapes", range(1, 200), problems)
    assert len(text.encode()) <= documents.TERMINATION_LIMIT
    report = upkeep.parse_scrub_report(text)
    assert report["checked"] == 199
    assert 0 < len(report["problems"]) < 199
    assert report["omitted"] == 199 - len(report["problems"])
    assert len(report["problems"][0]["what"]) <= 160


def test_an_intact_scrub_report_parses_back() -> None:
    report = upkeep.parse_scrub_report(upkeep.scrub_report("shapes", [2, 1], []))
    assert report == {
        "model": "shapes",
        "checked": 2,
        "versions": [1, 2],
        "problems": [],
        "omitted": 0,
    }


@pytest.mark.parametrize("text", ["", "OK: shapes v1 verified", json.dumps({"model": "x"})])
def test_what_is_not_a_report_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a report"):
        upkeep.parse_scrub_report(text)
    with pytest.raises(ValueError, match="not a report"):
        upkeep.parse_retain_report(text)


def test_a_retain_report_lists_the_versions_gone_and_the_failures() -> None:
    text = upkeep.retain_report("shapes", [4, 1], ["a", "b", "c"], [{"path": "p", "error": "e"}])
    assert upkeep.parse_retain_report(text) == {
        "model": "shapes",
        "versions": [1, 4],
        "removed": 3,
        "failed": [{"path": "p", "error": "e"}],
        "omitted": 0,
    }


def test_retention_removes_three_copies_and_keeps_the_metadata_file() -> None:
    paths = layout.VersionPaths.for_version(Path("/claim"), "shapes", 3)
    removed = upkeep.retention_paths(paths)
    assert [paths.relative(p) for p in removed] == [
        "shapes/models/retrained_v3.pt",
        "shapes/runs/train/retrained_v3.pt",
        "shapes/runs/train/retrain_v3",
    ]
    assert paths.metadata not in removed
    assert all(p.is_relative_to(paths.run_dir) for p in (paths.training_run, paths.manifest))


def test_a_problem_reads_as_version_name_location_and_what() -> None:
    entry = upkeep.problem(1, "production", "shapes/models/retrained_v1.pt", "missing", "missing")
    assert upkeep.problem_text(entry) == "v1 production shapes/models/retrained_v1.pt: missing"
