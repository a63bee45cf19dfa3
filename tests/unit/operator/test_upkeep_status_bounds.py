"""A ModelLine of 10,000 versions keeps its status small: under 256 KiB, whatever fails.

Each part of the status is built by the operator's own pure functions (the ledger as versions.py
writes it, its summary, the champion, the retention listing and the scrub's record), with every
other version failed, so no two verified versions are adjacent and ranges cannot merge."""

from __future__ import annotations

import datetime
import json
from typing import Any

from retrainer_contract import champion as champions
from retrainer_contract import upkeep as reports
from retrainer_contract.versions import format_ranges
from retrainer_operator import ledger, retention, scrub, upkeep
from retrainer_operator.config import OperatorConfig

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
CONFIG = OperatorConfig(claim_name="retrainer-models")
STATUS_LIMIT = 256 * 1024
VERSIONS = 10_000


class NoJobs:
    """A cluster without Jobs: retention only lists."""

    def read_job(self, namespace: str, name: str) -> None:
        return None


def write(data: dict[str, str], running: set[str]) -> dict[str, str]:
    """What versions.py writes: the data, compacted first when it passed the threshold."""
    if ledger.ledger_size(data) > ledger.COMPACT_THRESHOLD:
        return ledger.compact_in(data, running)
    return data


def ledger_of_ten_thousand() -> tuple[dict[str, str], dict[str, str], list[int]]:
    """(the largest ledger ever written, the last one, the verified versions)."""
    data: dict[str, str] = {}
    largest: dict[str, str] = {}
    verified: list[int] = []
    for version in range(1, VERSIONS + 1):
        uid = f"{version:08d}-aaaa-4bbb-8ccc-{version:012d}"
        data, _ = ledger.allocate_in(data, uid, f"shapes-schedule-2026{version:08d}", None)
        data = write(data, {uid})
        if version % 2:  # every other version fails: the worst case for ranges
            data = write(ledger.mark_verified_in(data, version, "f" * 64), set())
            verified.append(version)
        if ledger.ledger_size(data) > ledger.ledger_size(largest):
            largest = dict(data)
    return largest, data, verified


def champion_record() -> dict[str, Any]:
    record: dict[str, Any] | None = None
    for version in range(9_950, 9_999, 2):
        metrics = {"precision": 0.9, "recall": 0.8, "mAP50": 0.85, "mAP50_95": 0.6}
        record = champions.move(
            record, version, reason="Promoted", since="2026-01-01T00:00:00Z", metrics=metrics
        )
    assert record is not None
    return record


def test_ten_thousand_versions_keep_the_modelline_status_under_256_kib() -> None:
    largest, last, verified = ledger_of_ten_thousand()
    line: dict[str, Any] = {
        "metadata": {"name": "shapes", "namespace": "team-a", "uid": "u"},
        "spec": {"retention": {"keepLast": 5}, "scrub": {"intervalSeconds": 3600}},
        "status": {"champion": champion_record()},
    }
    status: dict[str, Any] = {**line["status"], "ledger": largest, **ledger.summary_of(last)}
    listed = retention.retention_step(NoJobs(), line, CONFIG, verified, T0)  # type: ignore[arg-type]
    status = upkeep.apply_step(status, listed, 1)
    # Retention removed all it could (ranges as fragmented as the verified versions)...
    status["retention"]["removed"] = format_ranges(verified[:-7])
    # ...and a scrub found every version damaged.
    problems = [
        reports.problem(v, "production", f"shapes/models/retrained_v{v}.pt", "missing", "missing")
        for v in verified
    ]
    report = reports.scrub_report("shapes", verified, problems)
    status = upkeep.apply_step(status, scrub.result_step({}, 1, report, T0), 1)

    size = len(json.dumps(status, separators=(",", ":")).encode())
    sizes = {k: len(json.dumps(v).encode()) for k, v in status.items()}
    assert size < STATUS_LIMIT, sizes
    assert len(json.dumps(status["retention"]["removable"])) < 2048
    assert len(json.dumps(status["scrub"])) <= 4096


def test_removable_names_the_first_versions_and_counts_the_rest() -> None:
    listing = retention.removable_listing("models", "shapes", list(range(1, 5_001)))
    assert len(listing) == 3 * retention.REMOVABLE_SHOWN + 1
    assert listing[0] == "pvc://models/shapes/models/retrained_v1.pt"
    assert listing[-1] == "and 14970 more claim copies of 4990 versions: 11-5000"
    assert retention.removable_listing("models", "shapes", [2]) == [
        "pvc://models/shapes/models/retrained_v2.pt",
        "pvc://models/shapes/runs/train/retrained_v2.pt",
        "pvc://models/shapes/runs/train/retrain_v2",
    ]
