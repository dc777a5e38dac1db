"""Structured logs: one JSON object per line, and aiokafka's routine coordinator errors as warnings."""

from __future__ import annotations

import logging

import orjson

from keventing.logs import JsonFormatter, TransientCoordinatorErrors


def _record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("aiokafka.consumer.group_coordinator", level, __file__, 1, message, (), None)


def test_coordinator_election_errors_are_warnings() -> None:
    record = _record(
        logging.ERROR, "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError"
    )
    assert TransientCoordinatorErrors().filter(record)
    assert record.levelname == "WARNING"


def test_other_errors_stay_errors() -> None:
    record = _record(logging.ERROR, "Unexpected error in heartbeat routine")
    assert TransientCoordinatorErrors().filter(record)
    assert record.levelname == "ERROR"


def test_json_lines_carry_service_level_message_and_extras() -> None:
    record = _record(logging.INFO, "created topic")
    record.topic = "knative-broker-default-default"
    line = orjson.loads(JsonFormatter("controller").format(record))
    assert line["service"] == "controller"
    assert line["level"] == "info"
    assert line["msg"] == "created topic"
    assert line["topic"] == "knative-broker-default-default"
