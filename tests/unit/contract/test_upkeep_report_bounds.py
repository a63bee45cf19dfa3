"""The upkeep reports of a line of 10,000 versions still fit the kubelet's 4 KiB and parse.

About 1,030 versions listed one by one used to overflow a scrub's termination message: the
kubelet cut it, the operator could not parse it, and every scrub failed from then on.
"""

from __future__ import annotations

from retrainer_contract import documents, upkeep

TEN_THOUSAND = range(1, 10_001)


def fits(text: str) -> bool:
    return len(text.encode("utf-8")) <= documents.TERMINATION_LIMIT


def problem(version: int) -> dict[str, object]:
    where = f"shapes/models/retrained_v{version}.pt"
    return upkeep.problem(version, "production", where, "missing", upkeep.MISSING)


def test_an_intact_scrub_of_ten_thousand_versions_fits_and_counts_them_all() -> None:
    text = upkeep.scrub_report("shapes", TEN_THOUSAND, [])
    assert fits(text)
    report = upkeep.parse_scrub_report(text)
    assert report["checked"] == 10_000
    assert report["versions"] == list(TEN_THOUSAND)  # one range: "1-10000"


def test_a_scrub_of_ten_thousand_scattered_versions_each_damaged_fits_with_a_sample() -> None:
    scattered = range(1, 20_000, 2)  # no two adjacent: as many ranges as versions
    text = upkeep.scrub_report("shapes", scattered, [problem(v) for v in scattered])
    assert fits(text)
    report = upkeep.parse_scrub_report(text)
    assert report["checked"] == 10_000
    assert report["problems"], "a sample of the problems is kept"
    assert len(report["problems"]) + report["omitted"] == 10_000
    listed = report["versions"]
    assert listed == list(scattered)[: len(listed)]  # the lowest, cut at a whole range
    assert report["versionsOmitted"] == 10_000 - len(listed)


def test_a_retain_report_of_ten_thousand_scattered_versions_and_failures_fits() -> None:
    scattered = list(range(1, 20_000, 2))
    failed = [
        {"path": f"shapes/runs/train/retrain_v{v}", "error": "EROFS " * 30} for v in scattered
    ]
    text = upkeep.retain_report("shapes", scattered, ["p"] * 30_000, failed, protected=[3, 5])
    assert fits(text)
    report = upkeep.parse_retain_report(text)
    assert report["removed"] == 30_000
    assert report["protected"] == [3, 5]
    assert len(report["failed"]) + report["omitted"] == 10_000
    assert report["versions"] == scattered[: len(report["versions"])]


def test_bounded_ranges_cut_at_a_whole_range_and_count_what_they_leave_out() -> None:
    assert upkeep.bounded_ranges([5, 1, 2, 3], 10) == ("1-3,5", 0)
    assert upkeep.bounded_ranges([1, 2, 3, 5, 7], 5) == ("1-3,5", 1)
    assert upkeep.bounded_ranges([1, 2, 3, 5, 7], 2) == ("", 5)
