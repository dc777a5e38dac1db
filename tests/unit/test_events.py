"""CloudEvents HTTP and Kafka bindings: decoding, validation, and pass-through fidelity."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keventing import events

BINARY = {
    "ce-specversion": "1.0",
    "ce-id": "1",
    "ce-type": "t",
    "ce-source": "/s",
    "content-type": "application/json",
}


def test_binary_mode_maps_headers_to_attributes_unchanged() -> None:
    event = events.from_http({**BINARY, "ce-time": "2023-12-01T11:35:56.7181741Z"}, b'{"a": 1}')
    assert event.attributes["time"] == "2023-12-01T11:35:56.7181741Z"
    assert event.attributes["datacontenttype"] == "application/json"
    assert event.data == b'{"a": 1}'


def test_binary_mode_percent_decodes_header_values() -> None:
    event = events.from_http({**BINARY, "ce-subject": "a%20b%25c%22"}, b"")
    assert event.attributes["subject"] == 'a b%c"'


def test_binary_encoding_percent_encodes_what_http_cannot_carry() -> None:
    event = events.Event({"specversion": "1.0", "id": "1", "type": "t", "source": "/s", "subject": 'a b%"é'})
    headers, _ = events.to_http_binary(event)
    assert headers["ce-subject"] == "a%20b%25%22%C3%A9"
    assert events.from_http(headers, b"").attributes["subject"] == 'a b%"é'


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"specversion": "1.0", "type": "t", "source": "/s"}, "missing required attribute(s): id"),
        ({"specversion": "0.3", "id": "1", "type": "t", "source": "/s"}, "unsupported specversion"),
        (
            {"specversion": "1.0", "id": "1", "type": "t", "source": "/s", "time": "2023-13-01T00:00:00Z"},
            "RFC 3339",
        ),
        (
            {"specversion": "1.0", "id": "1", "type": "t", "source": "/s", "Bad": "x"},
            "invalid attribute name",
        ),
        ({"specversion": "1.0", "id": "", "type": "t", "source": "/s"}, "id"),
    ],
)
def test_invalid_contexts_are_rejected_with_the_reason(attributes: dict, message: str) -> None:
    with pytest.raises(events.InvalidEvent, match=None) as err:
        events.validate(attributes)
    assert message in str(err.value)


def test_structured_json_data_is_kept_as_json_bytes() -> None:
    body = b'{"specversion":"1.0","id":"1","type":"t","source":"/s","datacontenttype":"application/json","data":{"a":[1,2]}}'
    event = events.from_http({"content-type": "application/cloudevents+json"}, body)
    assert event.data == b'{"a":[1,2]}'
    assert "data" not in event.attributes


def test_structured_text_data_and_base64_data() -> None:
    text = events.from_structured_json(
        b'{"specversion":"1.0","id":"1","type":"t","source":"/s","datacontenttype":"text/plain","data":"hi"}'
    )
    assert text.data == b"hi"
    raw = base64.b64encode(b"\x00\xff").decode()
    binary = events.from_structured_json(
        f'{{"specversion":"1.0","id":"1","type":"t","source":"/s","data_base64":"{raw}"}}'.encode()
    )
    assert binary.data == b"\x00\xff"


def test_structured_integer_and_boolean_extensions_become_their_string_form() -> None:
    event = events.from_structured_json(
        b'{"specversion":"1.0","id":"1","type":"t","source":"/s","n":7,"b":true}'
    )
    assert event.attributes["n"] == "7"
    assert event.attributes["b"] == "true"


def test_batched_mode_is_unsupported() -> None:
    with pytest.raises(events.UnsupportedMediaType):
        events.from_http({"content-type": "application/cloudevents-batch+json"}, b"[]")


def test_kafka_binding_uses_ce_headers_and_partitionkey_as_key() -> None:
    event = events.from_http({**BINARY, "ce-partitionkey": "k"}, b"{}")
    key, headers, value = events.to_kafka_binary(event)
    assert key == b"k"
    assert ("ce_id", b"1") in headers
    assert ("content-type", b"application/json") in headers
    assert value == b"{}"
    assert events.from_kafka(headers, value).attributes == event.attributes


def test_kafka_record_without_cloudevent_headers_is_invalid() -> None:
    with pytest.raises(events.InvalidEvent):
        events.from_kafka([("other", b"x")], b"{}")


# Control characters (Cc) are not allowed in attribute values (validated at ingress).
_values = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)


@given(subject=_values, extension=_values, data=st.binary(max_size=200))
def test_http_to_kafka_to_http_round_trip_is_lossless(subject: str, extension: str, data: bytes) -> None:
    original = events.Event(
        {"specversion": "1.0", "id": "x", "type": "t", "source": "/s", "subject": subject, "ext": extension},
        data or None,
    )
    headers, body = events.to_http_binary(original)
    received = events.from_http(headers, body)
    key, kafka_headers, value = events.to_kafka_binary(received)
    back = events.from_kafka(kafka_headers, value)
    assert back.attributes == original.attributes
    assert (back.data or b"") == (original.data or b"")
