"""`retrainer versions`: one table per model line, versions in numeric order."""

from __future__ import annotations

import datetime as dt
from typing import Any

from retrainer_cli import versions

NOW = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.UTC)


def _job(
    name: str, model: str, version: int | None, phase: str | None = None, ns: str = "team-a"
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if version is not None:
        status = {
            "version": version,
            "phase": phase or "Succeeded",
            "metrics": {"mAP50": 0.5 + version / 100, "mAP50_95": 0.25},
            "conditions": [{"type": "Verified", "status": "True"}],
        }
    return {
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-11-27T11:00:00Z"},
        "spec": {"model": model},
        "status": status,
    }


def _lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_versions_are_sorted_numerically_with_unallocated_last() -> None:
    items = [_job("b", "shapes", 10), _job("new", "shapes", None), _job("a", "shapes", 9)]
    lines = _lines(versions.render_versions(items, now=NOW))
    assert lines[0] == ["MODEL", "shapes"]
    assert lines[1] == ["VERSION", "NAME", "PHASE", "mAP50", "mAP50-95", "VERIFIED", "AGE"]
    assert lines[2] == ["9", "a", "Succeeded", "0.590", "0.250", "True", "60m"]
    assert lines[3][:3] == ["10", "b", "Succeeded"]
    assert lines[4] == ["<none>", "new", "Pending", "<none>", "<none>", "<none>", "60m"]


def test_each_model_line_gets_its_own_table_and_a_filter_keeps_one() -> None:
    items = [_job("s1", "shapes", 1), _job("c1", "cars", 1), _job("s2", "shapes", 2)]
    text = versions.render_versions(items, now=NOW)
    assert text.index("MODEL cars") < text.index("MODEL shapes")
    only = versions.render_versions(items, model="cars", now=NOW)
    assert "shapes" not in only and "c1" in only


def test_all_namespaces_separates_the_same_model_in_two_namespaces() -> None:
    items = [_job("x", "shapes", 1, ns="team-a"), _job("y", "shapes", 1, ns="team-b")]
    text = versions.render_versions(items, now=NOW, show_namespace=True)
    assert "MODEL shapes (namespace team-a)" in text
    assert "MODEL shapes (namespace team-b)" in text


def test_nothing_found_says_so_instead_of_an_empty_table() -> None:
    assert versions.render_versions([], model="cars") == "No RetrainJobs found for model 'cars'."


def test_a_version_whose_retrainjob_was_deleted_is_listed_from_the_modelline() -> None:
    from retrainer_cli import versions as cli_versions

    kept = {
        "metadata": {"name": "run-2", "namespace": "team"},
        "spec": {"model": "shapes"},
        "status": {"version": 2, "phase": "Succeeded"},
    }
    line = {
        "metadata": {"name": "shapes", "namespace": "team"},
        "status": {
            "verifiedVersions": "1-2",
            "versions": [
                {"version": 3, "state": "allocated", "retrainJob": "run-3"},
                {"version": 2, "state": "verified", "retrainJob": "run-2"},
                {"version": 1, "state": "verified", "retrainJob": "run-1"},
            ],
        },
    }
    rows = cli_versions.merge_durable([kept], [line])
    by_version = {r["status"]["version"]: r for r in rows}
    assert sorted(by_version) == [1, 2, 3]
    assert by_version[2] is kept  # the live RetrainJob wins
    assert by_version[1]["metadata"]["name"] == "run-1"
    assert by_version[1]["status"]["phase"] == cli_versions.DELETED
    text = cli_versions.render_versions(rows, "shapes")
    assert "run-1" in text and "Deleted" in text and "run-3" in text
