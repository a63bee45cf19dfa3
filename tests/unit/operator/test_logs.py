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
