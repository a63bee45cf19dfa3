"""Structured logging for the trainer: one JSON object per line on stdout.

The pod's log is what a user reads with `kubectl logs` and what the operator may scan, so each
line is an event with fields, never free text with secrets in it.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

__all__ = ["event"]


def event(name: str, /, **fields: Any) -> None:
    """Print `{"ts": ..., "event": name, **fields}` as one line and flush."""
    record = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": name, **fields}
    sys.stdout.write(json.dumps(record, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()
