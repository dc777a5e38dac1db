"""EventTransform on the running stack: in a Trigger's path it replies with the transformed event, which
the Broker delivers like any reply; with a sink it forwards the transformed event and relays the sink's
(transformed) reply."""

from __future__ import annotations

from conftest import Kev, Reaction, RecordingSink
from helpers import broker_doc, trigger_doc

PROMOTE = """
{
  "specversion": "1.0",
  "id": id,
  "type": "user.extracted",
  "source": "transform.user-extractor",
  "userid": data.user.id,
  "data": {"name": data.user.name}
}
"""


def _transform(name: str, ns: str, expression: str, **spec: object) -> dict:
    return {
        "apiVersion": "eventing.knative.dev/v1alpha1",
        "kind": "EventTransform",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"jsonata": {"expression": expression}, **spec},
    }


def _ref(name: str) -> dict:
    return {"ref": {"apiVersion": "eventing.knative.dev/v1alpha1", "kind": "EventTransform", "name": name}}


def test_a_transform_in_a_trigger_s_path_replies_with_the_transformed_event(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    kev.apply(
        broker_doc("default", ns),
        _transform("extract", ns, PROMOTE),
        trigger_doc(
            "to-transform",
            ns,
            "default",
            "",
            subscriber=_ref("extract"),
            filter={"attributes": {"type": "user.created"}},
        ),
        trigger_doc(
            "extracted",
            ns,
            "default",
            sink.url(f"{ns}/extracted"),
            filter={"attributes": {"type": "user.extracted"}},
        ),
    )
    transform = kev.wait_ready("EventTransform", "extract", ns)
    assert transform.status.address.url.endswith(f"/eventtransforms/{ns}/extract")
    for name in ("to-transform", "extracted"):
        kev.wait_ready("Trigger", name, ns)
    response = kev.send(
        ns, "default", "u-1", type_="user.created", data=b'{"user": {"id": "u-7", "name": "Ada"}}'
    )
    assert response.status_code == 202
    (received,) = sink.wait_for(f"{ns}/extracted", 1)
    event = received.event
    assert event is not None
    assert (event.id, event.type, event.source, event.attributes["userid"]) == (
        "u-1",
        "user.extracted",
        "transform.user-extractor",
        "u-7",
    )
    assert received.body == b'{"name":"Ada"}'


def test_a_transform_with_a_sink_forwards_and_relays_the_sink_s_reply_transformed(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    path = f"{ns}/transform-sink"
    reply_headers = {
        "ce-specversion": "1.0",
        "ce-id": "r-1",
        "ce-type": "sink.reply",
        "ce-source": "/sink",
        "content-type": "application/json",
    }
    sink.program(path, Reaction(200, body=b'{"ok": true}', headers=reply_headers))
    reply_expression = (
        '{"specversion": "1.0", "id": id, "type": "reply.transformed", "source": source, "data": data}'
    )
    kev.apply(
        broker_doc("default", ns),
        _transform(
            "forward",
            ns,
            PROMOTE,
            sink={"uri": sink.url(path)},
            reply={"jsonata": {"expression": reply_expression}},
        ),
        trigger_doc(
            "to-transform",
            ns,
            "default",
            "",
            subscriber=_ref("forward"),
            filter={"attributes": {"type": "user.created"}},
        ),
        trigger_doc(
            "replies",
            ns,
            "default",
            sink.url(f"{ns}/replies"),
            filter={"attributes": {"type": "reply.transformed"}},
        ),
    )
    kev.wait_ready("EventTransform", "forward", ns)
    for name in ("to-transform", "replies"):
        kev.wait_ready("Trigger", name, ns)
    assert (
        kev.send(
            ns, "default", "u-2", type_="user.created", data=b'{"user": {"id": "u-8", "name": "Bo"}}'
        ).status_code
        == 202
    )
    (forwarded,) = sink.wait_for(path, 1)
    assert forwarded.event is not None and forwarded.event.type == "user.extracted"
    assert forwarded.event.attributes["userid"] == "u-8"
    (reply,) = sink.wait_for(f"{ns}/replies", 1)
    assert reply.event is not None and (reply.event.id, reply.event.source) == ("r-1", "/sink")
    assert reply.body == b'{"ok":true}'
