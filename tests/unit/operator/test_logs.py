"""Operator logs are one JSON object per line, with extra fields kept."""

from __future__ import annotations

import json
import logging

from retrainer_operator.logs import JsonFormatter


def test_json_lines_carry_level_logger_message_and_extras() -> None:
    record = logging.makeLogRecord(
        {
            "name": "retrainer.operator",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "transition phase=%s",
            "args": ("Running",),
            "retrainjob": "ns/a",
            "k8s_ref": {"name": "a"},
        }
    )
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "retrainer.operator"
    assert entry["message"] == "transition phase=Running"
    assert entry["retrainjob"] == "ns/a"
    assert entry["k8s_ref"] == {"name": "a"}
    assert "\n" not in line


def test_kopf_success_lines_of_the_event_handlers_are_left_out_and_their_failures_kept() -> None:
    from retrainer_operator.handlers import EVENT_HANDLERS
    from retrainer_operator.logs import QuietHandlers

    quiet = QuietHandlers(EVENT_HANDLERS)

    def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
        return logging.makeLogRecord({"name": "kopf.objects", "msg": message, "levelno": level})

    assert not quiet.filter(record("Handler 'modelline_seen' succeeded."))
    assert not quiet.filter(record("Handler 'retrainjob_job_event' succeeded."))
    assert quiet.filter(record("Handler 'retrainjob_login' succeeded."))
    assert quiet.filter(record("Resuming is processed: 1 succeeded; 0 failed."))
    failed = "Handler 'modelline_seen' failed with an exception. Will ignore."
    assert quiet.filter(record(failed, logging.ERROR))
