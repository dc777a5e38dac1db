"""Sequence and Parallel on a real Kafka, built by the controller from KafkaChannels and Subscriptions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from conftest import Kev, Reaction, Received, RecordingSink
from helpers import broker_doc, parallel_doc, ref, sequence_doc, trigger_doc

from keventing.kafka.client import admin_client


def ce_headers(event_id: str, type_: str = "dev.test.flow") -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": type_,
        "ce-source": "/tests/flows",
        "content-type": "application/json",
    }


def transform(change: Callable[[dict[str, Any]], dict[str, Any]], type_: str | None = None) -> Any:
    """A step that replies with the received event, its JSON data changed (and its type, if given)."""

    def respond(received: Received) -> Reaction:
        assert received.event is not None
        headers = {k: v for k, v in received.headers.items() if k.startswith("ce-")}
        headers["content-type"] = "application/json"
        if type_ is not None:
            headers["ce-type"] = type_
        return Reaction(200, json.dumps(change(json.loads(received.body))).encode(), headers)

    return respond


def append(step: str) -> Any:
    return transform(lambda data: {**data, "steps": [*data.get("steps", []), step]})


def send(kev: Kev, url: str, event_id: str, data: dict[str, Any]) -> None:
    response = kev.http.post(url, headers=ce_headers(event_id), content=json.dumps(data).encode())
    assert response.status_code == 202, response.text


def topics_of(kafka: str, ns: str) -> set[str]:
    async def list_topics() -> set[str]:
        async with admin_client(kafka) as admin:
            return {t for t in await admin.list_topics() if t.startswith(f"knative-messaging-kafka.{ns}.")}

    return asyncio.run(list_topics())


def test_three_step_sequence_applies_every_step_in_order(kev: Kev, sink: RecordingSink, ns: str) -> None:
    for i in range(3):
        sink.respond_with(f"{ns}/step{i}", append(f"step{i}"))
    sink.program(f"{ns}/step1", Reaction(503))  # the step's own delivery spec retries it
    steps = [{"uri": sink.url(f"{ns}/step{i}")} for i in range(3)]
    steps[1]["delivery"] = {"retry": 2, "backoffPolicy": "linear", "backoffDelay": "PT0.1S"}
    kev.apply(sequence_doc("pipeline", ns, steps, reply={"uri": sink.url(f"{ns}/result")}))
    sequence = kev.wait_ready("Sequence", "pipeline", ns)
    assert sequence.status.address.url == f"{kev.stack.ingress_url}/channels/{ns}/pipeline-kn-sequence-0"
    assert [c.channel.name for c in sequence.status.channelStatuses] == [
        f"pipeline-kn-sequence-{i}" for i in range(3)
    ]
    for n in range(3):
        send(kev, sequence.status.address.url, f"seq-{n}", {"n": n})
    results = sink.wait_for(f"{ns}/result", 3)
    by_id = {r.event.id: json.loads(r.body) for r in results if r.event}
    assert by_id == {f"seq-{n}": {"n": n, "steps": ["step0", "step1", "step2"]} for n in range(3)}
    assert len(sink.requests(f"{ns}/step1")) == 4  # one 503, then the three events


def test_sequence_reply_can_be_a_broker_and_a_trigger_can_feed_a_sequence(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    sink.respond_with(f"{ns}/enrich", transform(lambda data: {**data, "enriched": True}, "order.enriched"))
    kev.apply(
        broker_doc("default", ns),
        sequence_doc("enrich", ns, [{"uri": sink.url(f"{ns}/enrich")}], reply=ref("Broker", "default")),
        trigger_doc(
            "to-sequence",
            ns,
            "default",
            "unused",
            subscriber=ref("Sequence", "enrich"),
            filter={"attributes": {"type": "order.created"}},
        ),
        trigger_doc(
            "enriched",
            ns,
            "default",
            sink.url(f"{ns}/enriched"),
            filter={"attributes": {"type": "order.enriched"}},
        ),
    )
    for kind, name in (("Sequence", "enrich"), ("Trigger", "to-sequence"), ("Trigger", "enriched")):
        kev.wait_ready(kind, name, ns)
    trigger = kev.get("Trigger", "to-sequence", ns)
    assert trigger.status.subscriberUri == f"{kev.stack.ingress_url}/channels/{ns}/enrich-kn-sequence-0"
    response = kev.send(ns, "default", "o-1", "order.created", data=b'{"order":1}')
    assert response.status_code == 202
    got = sink.wait_for(f"{ns}/enriched", 1)[0]
    assert got.event is not None and got.event.id == "o-1"
    assert json.loads(got.body) == {"order": 1, "enriched": True}


def test_parallel_sends_each_event_to_exactly_the_branches_whose_filter_accepts_it(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    def parity_filter(remainder: int, reject: Reaction) -> Any:
        def respond(received: Received) -> Reaction:
            if json.loads(received.body)["n"] % 2 != remainder:
                return reject
            headers = {k: v for k, v in received.headers.items() if k.startswith("ce-")}
            return Reaction(200, received.body, {**headers, "content-type": "application/json"})

        return respond

    sink.respond_with(f"{ns}/even", parity_filter(0, Reaction(202)))
    sink.respond_with(f"{ns}/odd", parity_filter(1, Reaction(200)))  # an empty 2xx also stops the event
    sink.respond_with(f"{ns}/halve", transform(lambda data: {"half": data["n"] // 2}, "number.halved"))
    sink.respond_with(f"{ns}/negate", transform(lambda data: {"negated": -data["n"]}, "number.negated"))
    branches = [
        {
            "filter": {"uri": sink.url(f"{ns}/even")},
            "subscriber": {"uri": sink.url(f"{ns}/halve")},
            "reply": {"uri": sink.url(f"{ns}/evens")},
        },
        {"filter": {"uri": sink.url(f"{ns}/odd")}, "subscriber": {"uri": sink.url(f"{ns}/negate")}},
        {"subscriber": {"uri": sink.url(f"{ns}/every")}},  # no filter: every event
    ]
    kev.apply(parallel_doc("numbers", ns, branches, reply={"uri": sink.url(f"{ns}/odds")}))
    parallel = kev.wait_ready("Parallel", "numbers", ns)
    assert parallel.status.address.url == f"{kev.stack.ingress_url}/channels/{ns}/numbers-kn-parallel"
    assert len(parallel.status.branchStatuses) == 3
    for n in range(6):
        send(kev, parallel.status.address.url, f"n-{n}", {"n": n})
    sink.wait_for(f"{ns}/evens", 3)
    sink.wait_for(f"{ns}/odds", 3)
    sink.wait_for(f"{ns}/every", 6)
    asyncio.run(asyncio.sleep(1.0))  # time for any wrongly routed event to arrive too

    def bodies(path: str) -> list[bytes]:
        return sorted(r.body for r in sink.requests(f"{ns}/{path}"))

    assert bodies("evens") == [b'{"half": 0}', b'{"half": 1}', b'{"half": 2}']
    assert bodies("odds") == [b'{"negated": -1}', b'{"negated": -3}', b'{"negated": -5}']
    assert sorted(r.event.id for r in sink.requests(f"{ns}/halve") if r.event) == ["n-0", "n-2", "n-4"]
    assert sorted(r.event.id for r in sink.requests(f"{ns}/negate") if r.event) == ["n-1", "n-3", "n-5"]
    assert len(sink.requests(f"{ns}/every")) == 6
    assert {r.event.type for r in sink.requests(f"{ns}/evens") if r.event} == {"number.halved"}


def test_deleting_a_sequence_removes_its_channels_subscriptions_and_topics(
    kev: Kev, sink: RecordingSink, ns: str, kafka: str
) -> None:
    steps = [{"uri": sink.url(f"{ns}/a")}, {"uri": sink.url(f"{ns}/b")}]
    kev.apply(sequence_doc("doomed", ns, steps))
    kev.wait_ready("Sequence", "doomed", ns)
    names = {"doomed-kn-sequence-0", "doomed-kn-sequence-1"}
    for kind in ("KafkaChannel", "Subscription"):
        for name in names:
            child = kev.get(kind, name, ns)
            assert child is not None
            assert [(r.kind, r.name, r.controller) for r in child.metadata.ownerReferences] == [
                ("Sequence", "doomed", True)
            ]
    assert topics_of(kafka, ns) == {f"knative-messaging-kafka.{ns}.{name}" for name in names}

    assert kev.delete("Sequence", "doomed", ns)

    def all_gone() -> bool:
        children = [kev.get(kind, name, ns) for kind in ("KafkaChannel", "Subscription") for name in names]
        return all(child is None for child in children) and not topics_of(kafka, ns)

    kev.wait_for(all_gone, timeout=30, what="the Sequence's channels, subscriptions and topics to go")
