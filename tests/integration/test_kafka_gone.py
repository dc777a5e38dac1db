"""A Kafka that is gone for good costs a dispatcher next to nothing: its clients ask for metadata at a
bounded rate instead of as fast as a refused connection fails."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import Kev, RecordingSink
from helpers import broker_doc, trigger_doc

from kev.kafka.embedded import EmbeddedKafka, free_port
from kev.stack import Stack

pytestmark = pytest.mark.timeout(400)

FAILED_REFRESH = "Unable to update metadata"


def test_a_dispatcher_whose_kafka_is_gone_does_not_spin(sink: RecordingSink, ns: str, tmp_path: Path) -> None:
    kafka = EmbeddedKafka(port=free_port(), controller_port=free_port(), data_dir=tmp_path / "kafka")
    kafka.start(timeout=180)
    stack = Stack.on_free_ports(kafka.bootstrap_servers, tmp_path / "logs", "gone", {})
    frozen = None
    try:
        stack.start_all()
        stack.wait_ready(90)
        kev = Kev(stack)
        kev.apply(broker_doc("default", ns), trigger_doc("t", ns, "default", sink.url(f"{ns}/gone")))
        kev.wait_ready("Trigger", "t", ns)
        for i in range(5):
            assert kev.send(ns, "default", f"g-{i}").status_code == 202
        sink.wait_for(f"{ns}/gone", 5)
        # Hung first (its partitions' leaders then unknown to the clients), then gone: aiokafka's fetcher
        # asked for a refresh, the refresh failed at once, and again, 8,000 times a second at a whole core.
        frozen = kafka._read_pid()  # noqa: SLF001
        assert frozen is not None
        os.kill(frozen, signal.SIGSTOP)
        time.sleep(1)
        controller = stack.services["controller"].process
        assert controller is not None
        controller.send_signal(signal.SIGTERM)
        controller.wait(30)
        os.kill(frozen, signal.SIGCONT)
        frozen = None
        kafka.stop()
        time.sleep(5)
        log = stack.log_dir / "dispatcher.log"
        before = log.read_text().count(FAILED_REFRESH)
        time.sleep(10)
        failed = log.read_text().count(FAILED_REFRESH) - before
        # A refresh per client every half second at the most: a handful of clients, 20 s of refreshes.
        assert failed < 400, f"{failed} failed metadata refreshes in 10 s"
        dispatcher = stack.services["dispatcher"].process
        assert dispatcher is not None and dispatcher.poll() is None
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        stack.stop_all()
        kafka.stop()
