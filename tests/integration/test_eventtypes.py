"""EventType registry on the running stack: new (type, source) pairs at a Broker, and in replies, become
EventTypes, each once; ``kev get eventtypes`` lists them."""

from __future__ import annotations

import os
import subprocess
import time

from conftest import Kev, Reaction, RecordingSink
from helpers import broker_doc, trigger_doc

from kev.stack import kev_command
from keventing.resources import EventType


def _event_types(kev: Kev, ns: str) -> list[EventType]:
    async def fetch(store) -> list:
        return await store.list("EventType", ns)

    return [e for e in kev._store(fetch) if isinstance(e, EventType)]


def _pairs(kev: Kev, ns: str) -> list[tuple[str, str | None]]:
    return sorted((e.spec.type, e.spec.source) for e in _event_types(kev, ns))


def test_new_pairs_become_event_types_once(kev: Kev, ns: str) -> None:
    kev.apply(broker_doc("default", ns))
    kev.wait_ready("Broker", "default", ns)
    kev.wait_for(
        lambda: kev.send(ns, "default", "probe", "probe.type").status_code == 202, what="the ingress"
    )
    for i in range(3):
        assert kev.send(ns, "default", f"a{i}", "order.created", source="/shop").status_code == 202
    assert kev.send(ns, "default", "b", "order.paid", source="/shop").status_code == 202
    assert kev.send(ns, "default", "c", "order.created", source="/pos").status_code == 202
    expected = [
        ("order.created", "/pos"),
        ("order.created", "/shop"),
        ("order.paid", "/shop"),
        ("probe.type", "/tests"),
    ]
    kev.wait_for(lambda: _pairs(kev, ns) == expected, what="four EventTypes")
    for i in range(3):  # seen again: nothing new
        assert kev.send(ns, "default", f"again{i}", "order.paid", source="/shop").status_code == 202
    time.sleep(1.0)
    event_types = _event_types(kev, ns)
    assert sorted((e.spec.type, e.spec.source) for e in event_types) == expected
    created = next(e for e in event_types if e.spec.type == "order.paid")
    assert created.spec.reference is not None
    assert (created.spec.reference.kind, created.spec.reference.name) == ("Broker", "default")
    assert created.name.startswith("et-default-")
    kev.wait_ready("EventType", created.name, ns)

    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kev.stack.bootstrap_servers,
        "KEVENTING_INSTANCE": kev.stack.instance,
        "COLUMNS": "200",
    }
    listed = subprocess.run(
        [*kev_command(), "get", "eventtypes", "-n", ns], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert "TYPE" in listed.stdout and "order.paid" in listed.stdout and "Broker/default" in listed.stdout


def test_reply_types_become_event_types(kev: Kev, sink: RecordingSink, ns: str) -> None:
    reply = {
        "ce-specversion": "1.0",
        "ce-id": "r-1",
        "ce-type": "greeting.answered",
        "ce-source": "/responder",
        "content-type": "application/json",
    }
    sink.program(f"{ns}/responder", Reaction(200, b'{"answer": 42}', reply))
    kev.apply(
        broker_doc("default", ns),
        trigger_doc(
            "ask", ns, "default", sink.url(f"{ns}/responder"), filter={"attributes": {"type": "greeting"}}
        ),
    )
    kev.wait_ready("Trigger", "ask", ns)
    assert kev.send(ns, "default", "q-1", "greeting", source="/asker").status_code == 202
    kev.wait_for(lambda: ("greeting.answered", "/responder") in _pairs(kev, ns), what="the reply's EventType")
