"""The image's HEALTHCHECK finds the port of the service PID 1 runs."""

from __future__ import annotations

import pytest

from kev.healthcheck import probe_port

VENV = ["/opt/keventing/bin/python", "/opt/keventing/bin/kev"]


@pytest.mark.parametrize(
    ("command", "port"),
    [
        (["receiver"], 8080),
        (["dispatcher"], 8090),
        (["controller"], 8091),
        (["sources"], 8092),
        (["event-display"], 8081),
        (["event-display", "--port", "9000"], 9000),
        (["event-display", "-p", "9001"], 9001),
        (["event-display", "--port=9002"], 9002),
        (["get", "brokers"], None),
    ],
)
def test_probe_port_follows_the_command(command: list[str], port: int | None) -> None:
    assert probe_port([*VENV, *command], {}) == port


def test_probe_port_reads_the_port_variable_the_service_reads() -> None:
    assert probe_port(["kev", "receiver"], {"KEVENTING_RECEIVER_PORT": "18080"}) == 18080
    assert probe_port(["kev", "dispatcher"], {"KEVENTING_RECEIVER_PORT": "18080"}) == 8090


def test_probe_port_without_a_kev_command_is_none() -> None:
    assert probe_port(["/bin/sh"], {}) is None
    assert probe_port(["kev"], {}) is None
