"""EventTransform: the model, its contract entry, and the JSONata transformation the receiver applies."""

from __future__ import annotations

import pytest
from helpers import broker_doc

from controller.reconciler import ControllerConfig, reconcile
from keventing import events
from keventing.resources import ResourceInvalid, ResourceKey, parse_resource
from receiver.transform import Transformer, TransformFailed, event_document

SIMPLE = '{"specversion": "1.0", "id": id, "time": time, "type": "transformed.type", "source": "transform.simple", "data": data}'


def _doc(**spec: object) -> dict:
    return {
        "apiVersion": "eventing.knative.dev/v1alpha1",
        "kind": "EventTransform",
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": spec,
    }


def _event(data: bytes = b'{"user": {"id": "u-7"}, "n": 2}') -> events.Event:
    return events.Event(
        {
            "specversion": "1.0",
            "id": "e-1",
            "type": "user.created",
            "source": "/users",
            "time": "2025-01-01T00:00:00Z",
            "datacontenttype": "application/json",
        },
        data,
    )


def test_an_event_transform_without_sink_is_addressed_and_answers_itself() -> None:
    desired = reconcile([parse_resource(_doc(jsonata={"expression": SIMPLE}))], ControllerConfig())
    status = desired.statuses[ResourceKey("EventTransform", "ns", "t")]
    assert status.ready and status.address.url == "http://localhost:8080/eventtransforms/ns/t"
    ingress = desired.contract["EventTransform/ns/t"].ingress
    assert (ingress.topic, ingress.transform.expression, ingress.transform.sink) == ("", SIMPLE, None)
    assert desired.topics == {}


def test_an_event_transform_whose_sink_does_not_resolve_is_not_ready_and_not_served() -> None:
    sink = {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "missing"}}
    desired = reconcile([parse_resource(_doc(jsonata={"expression": SIMPLE}, sink=sink))], ControllerConfig())
    ready = desired.statuses[ResourceKey("EventTransform", "ns", "t")].condition("Ready")
    assert ready is not None and ready.status == "False" and ready.reason == "SinkNotFound"
    assert "EventTransform/ns/t" not in desired.contract
    resolved = reconcile(
        [
            parse_resource(broker_doc("missing", "ns")),
            parse_resource(_doc(jsonata={"expression": SIMPLE}, sink=sink)),
        ],
        ControllerConfig(),
    )
    assert (
        resolved.contract["EventTransform/ns/t"].ingress.transform.sink == "http://localhost:8080/ns/missing"
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"jsonata": {"expression": '{"id": id,'}}, "spec.jsonata.expression"),
        ({}, "spec.jsonata"),
        ({"jsonata": {"expression": SIMPLE}, "reply": {"discard": True}}, "spec.reply"),
    ],
)
def test_an_event_transform_that_cannot_work_is_refused_at_apply(spec: dict, field: str) -> None:
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(_doc(**spec))
    assert str(err.value).startswith(field)


def test_knative_s_documented_expressions_transform_as_documented() -> None:
    transformer = Transformer(timeout=5)
    out = transformer.apply(SIMPLE, _event())
    assert (out.attributes["type"], out.attributes["source"], out.attributes["id"]) == (
        "transformed.type",
        "transform.simple",
        "e-1",
    )
    assert events.from_http(*_binary(out)).data == out.data
    extract = (
        '{"specversion": "1.0", "id": id, "type": "user.extracted", "source": "transform.user-extractor",'
        ' "time": time, "userid": data.user.id, "data": $}'
    )
    promoted = transformer.apply(extract, _event())
    assert promoted.attributes["userid"] == "u-7"
    assert b'"type":"user.created"' in (promoted.data or b"")  # the whole input event is the data
    # The expression is compiled once, whatever the number of events.
    assert len(transformer._compiled) == 2
    transformer.apply(SIMPLE, _event())
    assert len(transformer._compiled) == 2


def test_a_result_that_is_not_a_cloudevent_is_a_failure_that_says_why() -> None:
    transformer = Transformer(timeout=5)
    with pytest.raises(TransformFailed, match="not a valid CloudEvent"):
        transformer.apply('{"specversion": "1.0", "data": data}', _event())
    with pytest.raises(TransformFailed, match="must yield a CloudEvent object"):
        transformer.apply("data.n", _event())


def test_non_json_data_is_text_or_base64_in_the_expression_s_input() -> None:
    text = events.Event({**_event().attributes, "datacontenttype": "text/plain"}, b"hello")
    assert event_document(text)["data"] == "hello"
    binary = events.Event({**_event().attributes, "datacontenttype": "application/octet-stream"}, b"\xff\x00")
    assert event_document(binary)["data_base64"] == "/wA="


def _binary(event: events.Event) -> tuple[dict[str, str], bytes]:
    return events.to_http_binary(event)
