"""Table, age and size formatting: the kubectl-like look every command shares."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from retrainer_cli import table

NOW = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.UTC)


def test_columns_line_up_and_headers_keep_their_case() -> None:
    text = table.render_table(("NAME", "mAP50"), [["a", "Running"], ["longer-name", "x"]])
    lines = text.splitlines()
    assert lines[0].startswith("NAME") and "mAP50" in lines[0]
    assert [line.index(word) for line, word in zip(lines, ("mAP50", "Running", "x"), strict=True)]
    assert (
        len({line.index(w) for line, w in zip(lines, ("mAP50", "Running", "x"), strict=True)}) == 1
    )
    assert all(line == line.rstrip() for line in lines)


def test_missing_cells_print_empty_and_wrong_row_length_is_an_error() -> None:
    assert table.render_table(("a", "b"), [[None, 1]]).splitlines()[1].strip() == "1"
    with pytest.raises(ValueError, match="expected 2"):
        table.render_table(("a", "b"), [[1]])


@pytest.mark.parametrize(
    ("seconds", "age"),
    [
        (5, "5s"),
        (119, "119s"),
        (310, "5m10s"),
        (600, "10m"),
        (3 * 3600 + 120, "3h2m"),
        (20 * 3600, "20h"),
        (4 * 86400 + 5 * 3600, "4d5h"),
        (30 * 86400, "30d"),
    ],
)
def test_age_reads_like_kubectl(seconds: int, age: str) -> None:
    then = NOW - dt.timedelta(seconds=seconds)
    assert table.format_age(then.isoformat().replace("+00:00", "Z"), NOW) == age


def test_age_of_nothing_or_garbage_is_none_marker() -> None:
    assert table.format_age(None, NOW) == table.NONE
    assert table.format_age("yesterday", NOW) == table.NONE


def test_metrics_have_three_decimals_and_non_numbers_are_none() -> None:
    assert table.format_metric(0.51234) == "0.512"
    assert table.format_metric(1) == "1.000"
    assert table.format_metric(None) == table.NONE
    assert table.format_metric(True) == table.NONE
    assert table.format_metric("0.5") == table.NONE


def test_sizes_are_short_and_binary() -> None:
    assert table.format_size(512) == "512 B"
    assert table.format_size(1536) == "1.5 KiB"
    assert table.format_size(5 * 1024**3) == "5.0 GiB"
    assert table.short_sha("a" * 64) == "a" * 12
    assert table.short_sha("") == table.NONE


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_and_clears_after() -> None:
    stream = _Terminal()
    bar = table.ProgressBar("sha256 production", 200, stream=stream)
    bar.update(100)
    bar.update(100)
    assert " 50%" in stream.getvalue() and "100%" in stream.getvalue()
    bar.close()
    assert stream.getvalue().endswith("\r")


def test_progress_bar_is_silent_when_not_a_terminal() -> None:
    stream = io.StringIO()
    bar = table.ProgressBar("sha256 production", 200, stream=stream)
    bar.update(200)
    bar.close()
    assert stream.getvalue() == ""
