"""Plain-text output of the `retrainer` CLI: aligned tables, ages, metrics, a progress bar.

Kept apart from the commands so the formatting is one pure, tested place and every command
prints the same kubectl-like way (columns separated by three spaces, no trailing blanks).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

__all__ = [
    "NONE",
    "ProgressBar",
    "format_age",
    "format_metric",
    "format_size",
    "parse_time",
    "render_table",
    "short_sha",
]

# What kubectl prints for a missing value; easy to grep for.
NONE = "<none>"
_GAP = "   "


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Aligned columns, headers as given; the last column is not padded (no trailing blanks)."""
    cells = [[str(h) for h in headers]]
    cells += [["" if c is None else str(c) for c in row] for row in rows]
    for row in cells:
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells, expected {len(headers)}")
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append(_GAP.join(padded).rstrip())
    return "\n".join(lines)


def parse_time(value: str | dt.datetime | None) -> dt.datetime | None:
    """RFC 3339 string (as the apiserver writes it) or datetime -> aware datetime, else None."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def format_age(then: str | dt.datetime | None, now: dt.datetime | None = None) -> str:
    """kubectl's short age: 42s, 5m10s, 3h2m, 4d5h, 30d (two units at most, as kubectl does)."""
    start = parse_time(then)
    if start is None:
        return NONE
    now = now or dt.datetime.now(dt.UTC)
    seconds = max(0, int((now - start).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 10:
        return f"{minutes}m{sec}s" if sec else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours, mins = divmod(minutes, 60)
    if hours < 8:
        return f"{hours}h{mins}m" if mins else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days, hrs = divmod(hours, 24)
    if days < 8:
        return f"{days}d{hrs}h" if hrs else f"{days}d"
    return f"{days}d"


def format_metric(value: Any) -> str:
    """A validation metric with three decimals; anything not a number prints as <none>."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return NONE
    return f"{value:.3f}"


def format_size(size: Any) -> str:
    """Bytes as a short human size (1.5 MiB); not a number -> <none>."""
    if isinstance(size, bool) or not isinstance(size, int | float):
        return NONE
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover - the loop always returns


def short_sha(sha: Any, length: int = 12) -> str:
    """The first characters of a sha256 (enough to tell copies apart in a table)."""
    return sha[:length] if isinstance(sha, str) and sha else NONE


class ProgressBar:
    """A one-line progress bar for hashing large files; silent unless `stream` is a terminal.

    Writes only to `stream` (stderr by default) so tables on stdout stay clean for pipes.
    """

    def __init__(
        self, label: str, total: int, stream: TextIO | None = None, width: int = 30
    ) -> None:
        self.label = label
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done = 0
        self._shown = -1
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty and isatty())

    def update(self, nbytes: int) -> None:
        """Account for `nbytes` more bytes; redraws at most once per percent."""
        self.done = min(self.total, self.done + nbytes)
        percent = self.done * 100 // self.total
        if not self.enabled or percent == self._shown:
            return
        self._shown = percent
        filled = self.width * self.done // self.total
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {percent:3d}% {format_size(self.total)}")
        self.stream.flush()

    def close(self) -> None:
        """Clear the line so following output starts clean."""
        if self.enabled and self._shown >= 0:
            self.stream.write("\r" + " " * (len(self.label) + self.width + 24) + "\r")
            self.stream.flush()
