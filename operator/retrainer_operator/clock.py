"""The operator's clock: real time, or a time a test sets, so schedules are tested without
waiting for cron.

A named hook like `faults.point`: when RETRAINER_CLOCK_FILE names a file, `now()` is the ISO
8601 time written in it (the test advances it); otherwise it is the system's UTC time. The
chart never sets the variable.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

__all__ = ["ENV", "now"]

ENV = "RETRAINER_CLOCK_FILE"


def now() -> datetime.datetime:
    """The current time, timezone-aware (UTC unless the clock file says otherwise)."""
    path = os.environ.get(ENV)
    if path:
        text = Path(path).read_text(encoding="utf-8").strip()
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    return datetime.datetime.now(datetime.UTC)
