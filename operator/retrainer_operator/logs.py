"""Structured logging for the operator: JSON lines (default) or key=value text.

Kopf's own records and ours go through the same root handler. Messages never contain
secrets: the config's credentials are excluded from its repr and never logged.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["JsonFormatter", "QuietHandlers", "setup"]

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Kopf's per-object extras: its settings object and an internal flag are noise in a log line.
_SKIPPED = {"settings", "k8s_skip"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, plus any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _SKIPPED and not key.startswith("_"):
                try:
                    json.dumps(value)
                except (TypeError, ValueError):
                    value = repr(value)
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, sort_keys=False)


class QuietHandlers(logging.Filter):
    """Drops Kopf's "Handler 'x' succeeded." for the handler ids given: handlers that only
    note an event (one line per event of every Job, ModelLine and RetrainJob: half the log
    under a burst), where a failure is still logged."""

    def __init__(self, handler_ids: Iterable[str]) -> None:
        super().__init__()
        self._messages = {f"Handler {handler_id!r} succeeded." for handler_id in handler_ids}

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or record.getMessage() not in self._messages


def setup(log_format: str, level: int = logging.INFO, quiet: Iterable[str] = ()) -> None:
    """Route all logging to stderr in `log_format` ('json' or 'plain'); Kopf's success line
    of the handlers `quiet` names is left out."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(QuietHandlers(quiet))
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("time=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The client libraries are chatty at INFO (every HTTP request).
    for name in ("urllib3", "kubernetes", "asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING)
