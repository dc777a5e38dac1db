"""CloudEvents HTTP and Kafka bindings: decoding, validation, and pass-through fidelity."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
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


# ------------------------------------------------------------------ the ingress's one-pass record mapping


def _validate_before(attributes: dict[str, str]) -> None:
    """validate() as it was before its fast paths (name cache, printable-ASCII check): the reference."""
    missing = [name for name in events.REQUIRED if not attributes.get(name)]
    if missing:
        raise events.InvalidEvent(f"missing required attribute(s): {', '.join(missing)}")
    if attributes["specversion"] != events.SPECVERSION:
        raise events.InvalidEvent(
            f"unsupported specversion {attributes['specversion']!r}: only 1.0 is accepted"
        )
    for name, value in attributes.items():
        if not events._NAME.fullmatch(name):
            raise events.InvalidEvent(
                f"invalid attribute name {name!r}: names use only lower-case letters a-z and digits 0-9"
            )
        control = events._CONTROL.search(value)
        if control:
            raise events.InvalidEvent(
                f"attribute {name} contains the control character {control.group()!r}: "
                "CloudEvents attribute values must not contain control characters"
            )
    time = attributes.get("time")
    if time is not None and not events._is_rfc3339(time):
        raise events.InvalidEvent(f"attribute time {time!r} is not an RFC 3339 timestamp")
    for name in ("dataschema", "datacontenttype", "subject"):
        if name in attributes and attributes[name] == "":
            raise events.InvalidEvent(f"attribute {name} must not be empty when present")


def _outcome(call: object) -> object:
    try:
        return ("ok", call())  # type: ignore[operator]
    except events.InvalidEvent as err:
        return (type(err).__name__, str(err))


# Header values as a latin-1-decoded HTTP header can hold them: ASCII, percent escapes, controls, high bytes.
_values = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
    st.text(alphabet=st.characters(min_codepoint=0xA0, max_codepoint=0xFF), max_size=4),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xFF), max_size=12),
    st.sampled_from(
        ["1.0", "0.3", "", "%20", "%0A", "%E2%82%AC", "a%zz", "2023-12-01T11:35:56Z", "2023-13-01T00:00:00Z"]
    ),
)
_names = st.one_of(
    st.sampled_from(["id", "source", "type", "specversion", "subject", "time", "datacontenttype", "partitionkey",
                     "traceparent", "dataschema"]),
    st.text(alphabet="abcXYZ09_-é", min_size=0, max_size=6),
)  # fmt: skip
_requests = st.tuples(
    st.dictionaries(_names, _values, max_size=8),
    st.dictionaries(
        st.sampled_from(["content-type", "host", "ce", "ce-", "user-agent"]), _values, max_size=3
    ),
    st.booleans(),
    st.binary(max_size=8),
)


@settings(max_examples=400)
@given(_requests)
def test_the_one_pass_record_is_the_record_of_the_decoded_event(request: tuple) -> None:
    """from_http_with_record's record is byte for byte to_kafka_binary(from_http(...)), for every request."""
    ce, other, required, body = request
    headers = {f"ce-{name}": value for name, value in ce.items()}
    if required:  # the required attributes valid, the others as drawn (so that most requests are events)
        headers = {**headers, "ce-specversion": "1.0", "ce-id": "1", "ce-type": "t", "ce-source": "/s"}
    headers.update(other)
    result = _outcome(lambda: events.from_http_with_record(headers, body))
    if result[0] != "ok":
        assert result == _outcome(lambda: events.from_http(headers, body))
        return
    event, record = result[1]  # type: ignore[index]
    assert record is not None
    assert record == events.to_kafka_binary(event)
    assert [type(value) for _, value in record[1]] == [bytes] * len(record[1])


def test_content_type_takes_the_place_of_ce_datacontenttype_in_the_record() -> None:
    headers = {**BINARY, "ce-datacontenttype": "text/plain", "ce-subject": "s"}
    headers = {"ce-datacontenttype": "text/plain", **headers}
    event, record = events.from_http_with_record(headers, b"x")
    assert record is not None
    assert record[1][0] == ("content-type", b"application/json")
    assert [name for name, _ in record[1]].count("content-type") == 1
    assert record == events.to_kafka_binary(event)


def test_a_structured_request_has_no_one_pass_record() -> None:
    body = b'{"specversion":"1.0","id":"1","type":"t","source":"/s"}'
    event, record = events.from_http_with_record({"content-type": events.STRUCTURED_JSON}, body)
    assert record is None and event.attributes["id"] == "1"


@given(st.dictionaries(_names, _values, max_size=8), st.booleans())
def test_validate_accepts_and_refuses_as_before_its_fast_paths(
    attributes: dict[str, str], required: bool
) -> None:
    if required:
        attributes = {"specversion": "1.0", "id": "1", "type": "t", "source": "/s", **attributes}
    assert _outcome(lambda: events.validate(attributes)) == _outcome(lambda: _validate_before(attributes))
    # Twice: the second time every valid name is in the cache.
    assert _outcome(lambda: events.validate(attributes)) == _outcome(lambda: _validate_before(attributes))
