"""CloudEvents 1.0 bindings: HTTP (binary and structured in, binary out) and Kafka (binary mode).

A broker must not alter events, so events travel as an :class:`Event` of *string* attribute values plus the
raw data bytes: attributes are mapped header to header and never re-parsed or re-formatted. Validation checks
what the spec requires without rewriting anything.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote, unquote

import orjson

from keventing.nesting import nesting_exceeds

SPECVERSION = "1.0"
REQUIRED = ("id", "source", "specversion", "type")
STRUCTURED_JSON = "application/cloudevents+json"
BATCH_JSON = "application/cloudevents-batch+json"
KAFKA_HEADER_PREFIX = "ce_"
# A record for one egress only (``kev redrive`` writes them): its first header names the egress (its contract
# id, ``Trigger/<namespace>/<name>``) and every other egress passes it over. The first, so that the check
# costs each Trigger one comparison per record; not a ``ce_`` header, so it is no attribute of the event.
TARGET_HEADER = "keventing_target"
HTTP_HEADER_PREFIX = "ce-"
# Printable ASCII except space, double quote and percent travels unencoded (HTTP binding, 3.1.3.2).
_HTTP_SAFE = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in ' "%')
# fullmatch, not match with "$": "$" also matches before a trailing newline.
_NAME = re.compile(r"[a-z0-9]+")
# The type system's String excludes control characters (C0, DEL, C1): a value with one could not travel
# as an HTTP header (the dispatcher's Content-Type) and the spec forbids it anyway.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Structured-mode data nested deeper than this is refused (orjson cannot encode past 255 levels).
MAX_DATA_DEPTH = 64
_NEEDS_QUOTING = re.compile(r'[^\x21-\x7e]|["%]')
KafkaHeaders = list[tuple[str, bytes]]
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class InvalidEvent(ValueError):
    """The request or record does not carry a valid CloudEvent; the message says what is wrong."""


class UnsupportedMediaType(InvalidEvent):
    """A content mode keventing does not accept (batched mode, or an unknown structured format)."""


@dataclass(slots=True)
class Event:
    """A CloudEvent as it travels: context attributes and extensions as strings, data as raw bytes."""

    attributes: dict[str, str]
    data: bytes | None = None
    # Extra metadata that is not part of the event (e.g. the Kafka record it came from).
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.attributes["id"]

    @property
    def type(self) -> str:
        return self.attributes["type"]

    @property
    def source(self) -> str:
        return self.attributes["source"]

    @property
    def partition_key(self) -> str | None:
        return self.attributes.get("partitionkey")

    def with_extensions(self, extensions: Mapping[str, str]) -> Event:
        return Event({**self.attributes, **extensions}, self.data)


# Attribute names already found valid: a receiver sees the same few names in every event.
_VALID_NAMES: set[str] = set()
_VALID_NAMES_BOUND = 4096


def validate(attributes: Mapping[str, str]) -> None:
    """Raise :class:`InvalidEvent` unless ``attributes`` form a valid CloudEvents 1.0 context."""
    get = attributes.get
    if not (get("id") and get("source") and get("specversion") and get("type")):
        missing = [name for name in REQUIRED if not get(name)]
        raise InvalidEvent(f"missing required attribute(s): {', '.join(missing)}")
    if attributes["specversion"] != SPECVERSION:
        raise InvalidEvent(f"unsupported specversion {attributes['specversion']!r}: only 1.0 is accepted")
    for name, value in attributes.items():
        if name not in _VALID_NAMES:
            if not _NAME.fullmatch(name):
                raise InvalidEvent(
                    f"invalid attribute name {name!r}: names use only lower-case letters a-z and digits 0-9"
                )
            if len(_VALID_NAMES) < _VALID_NAMES_BOUND:
                _VALID_NAMES.add(name)
        if value.isascii() and value.isprintable():
            continue  # printable ASCII has no control character: the search below is for the rest
        control = _CONTROL.search(value)
        if control:
            raise InvalidEvent(
                f"attribute {name} contains the control character {control.group()!r}: "
                "CloudEvents attribute values must not contain control characters"
            )
    time = attributes.get("time")
    if time is not None and not _is_rfc3339(time):
        raise InvalidEvent(f"attribute time {time!r} is not an RFC 3339 timestamp")
    for name in ("dataschema", "datacontenttype", "subject"):
        if name in attributes and attributes[name] == "":
            raise InvalidEvent(f"attribute {name} must not be empty when present")


def _is_rfc3339(value: str) -> bool:
    if not _RFC3339.match(value):
        return False
    try:
        # Python 3.11 accepts any fraction length and 'Z'; this catches month 13 and the like.
        datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------- HTTP


def from_http(headers: Mapping[str, str], body: bytes) -> Event:
    """Decode an HTTP request or response in binary or structured mode (header names lower-case)."""
    return from_http_with_record(headers, body)[0]


def from_http_with_record(
    headers: Mapping[str, str], body: bytes
) -> tuple[Event, tuple[bytes | None, KafkaHeaders, bytes] | None]:
    """:func:`from_http`, and for a binary-mode request the record :func:`to_kafka_binary` would make of the
    event, built from the request headers in the same pass (None for structured mode).

    The ingress's hot path: one walk over the headers instead of one to read the attributes and one more
    over them to write the record's headers.
    """
    content_type = headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == BATCH_JSON:
        raise UnsupportedMediaType("batched content mode is not supported: send one event per request")
    if media_type.startswith("application/cloudevents"):
        if media_type != STRUCTURED_JSON:
            raise UnsupportedMediaType(f"unsupported structured event format {media_type!r}")
        return from_structured_json(body), None
    attributes: dict[str, str] = {}
    record_headers: KafkaHeaders = []
    content_type_at = -1  # where a ce-datacontenttype header put the record's content-type
    for name, value in headers.items():
        if name.startswith(HTTP_HEADER_PREFIX) and len(name) > 3:
            attribute = name[3:]
            if "%" in value:
                value = unquote(value)
            attributes[attribute] = value
            if attribute == "datacontenttype":
                content_type_at = len(record_headers)
                record_headers.append(("content-type", value.encode()))
            else:
                record_headers.append((KAFKA_HEADER_PREFIX + attribute, value.encode()))
    if not attributes:
        raise InvalidEvent(
            "no CloudEvent in the request: send ce-* headers (binary mode) "
            f"or Content-Type: {STRUCTURED_JSON} (structured mode)"
        )
    if content_type:
        # As in the attributes: Content-Type wins over ce-datacontenttype, in the place that one had.
        attributes["datacontenttype"] = content_type
        header = ("content-type", content_type.encode())
        if content_type_at < 0:
            record_headers.append(header)
        else:
            record_headers[content_type_at] = header
    validate(attributes)
    key = attributes.get("partitionkey")
    record = (key.encode() if key is not None else None), record_headers, body
    return Event(attributes, body if body else None), record


def from_structured_json(body: bytes) -> Event:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise InvalidEvent(f"structured-mode body is not valid JSON: {err}") from None
    if not isinstance(document, dict):
        raise InvalidEvent("structured-mode body must be a JSON object")
    data: bytes | None = None
    attributes: dict[str, str] = {}
    for name, value in document.items():
        if name == "data":
            continue
        if name == "data_base64":
            if not isinstance(value, str):
                raise InvalidEvent("data_base64 must be a string")
            try:
                data = base64.b64decode(value, validate=True)
            except ValueError:
                raise InvalidEvent("data_base64 is not valid base64") from None
            continue
        attributes[name] = _attribute_string(name, value)
    if "data" in document:
        if "data_base64" in document:
            raise InvalidEvent("an event carries either data or data_base64, not both")
        data = _structured_data(document["data"], attributes.get("datacontenttype"))
    validate(attributes)
    return Event(attributes, data)


def _attribute_string(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    raise InvalidEvent(f"attribute {name} must be a string, integer or boolean, not {type(value).__name__}")


def _structured_data(value: object, content_type: str | None) -> bytes | None:
    if value is None:
        return None
    if nesting_exceeds(value, MAX_DATA_DEPTH):
        raise InvalidEvent(f"data is nested more than {MAX_DATA_DEPTH} levels deep")
    if isinstance(value, str) and not is_json_content_type(content_type):
        return value.encode()
    return orjson.dumps(value)


def is_json_content_type(content_type: str | None) -> bool:
    if not content_type:
        return True  # the JSON event format defaults data to application/json
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json") or media == "text/json"


def to_http_binary(event: Event) -> tuple[dict[str, str], bytes]:
    """Encode ``event`` as binary-mode HTTP headers and body."""
    headers: dict[str, str] = {}
    for name, value in event.attributes.items():
        if name == "datacontenttype":
            headers["content-type"] = value
        else:
            # Most values are plain ASCII: skip quote() unless a character needs it.
            needs = _NEEDS_QUOTING.search(value)
            headers[HTTP_HEADER_PREFIX + name] = quote(value, safe=_HTTP_SAFE) if needs else value
    return headers, event.data or b""


def to_structured_json(event: Event) -> bytes:
    """Encode ``event`` in the JSON event format (for structured mode)."""
    document: dict[str, object] = dict(event.attributes)
    if event.data is not None:
        if is_json_content_type(event.attributes.get("datacontenttype")):
            try:
                document["data"] = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                document["data_base64"] = base64.b64encode(event.data).decode()
        else:
            try:
                document["data"] = event.data.decode()
            except UnicodeDecodeError:
                document["data_base64"] = base64.b64encode(event.data).decode()
    return orjson.dumps(document)


# --------------------------------------------------------------------------------------------- Kafka


def to_kafka_binary(event: Event) -> tuple[bytes | None, KafkaHeaders, bytes | None]:
    """Encode ``event`` as a Kafka record in binary mode: (key, headers, value)."""
    headers: KafkaHeaders = []
    for name, value in event.attributes.items():
        if name == "datacontenttype":
            headers.append(("content-type", value.encode()))
        else:
            headers.append((KAFKA_HEADER_PREFIX + name, value.encode()))
    key = event.attributes.get("partitionkey")
    # An event without data is stored with an empty value: a null value is a tombstone on compacted topics,
    # and Kafka clients refuse a record with neither key nor value.
    return (key.encode() if key is not None else None), headers, event.data or b""


def attributes_from_kafka(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """Read the CloudEvent attributes of a binary-mode record without touching its value."""
    attributes: dict[str, str] = {}
    for name, value in headers:
        if name.startswith(KAFKA_HEADER_PREFIX):
            attributes[name[3:]] = value.decode()
        elif name.lower() == "content-type":
            attributes["datacontenttype"] = value.decode()
    return attributes


def target_of(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    """The egress a record is for alone (see TARGET_HEADER), or None: for every egress of its topic."""
    if headers and headers[0][0] == TARGET_HEADER:
        return headers[0][1].decode()
    return None


def from_kafka(headers: Iterable[tuple[str, bytes]], value: bytes | None) -> Event:
    """Decode a Kafka record in binary or structured mode."""
    headers = list(headers)
    attributes = attributes_from_kafka(headers)
    if "specversion" not in attributes:
        content_type = attributes.get("datacontenttype", "")
        if content_type.split(";", 1)[0].strip().lower() == STRUCTURED_JSON and value:
            return from_structured_json(value)
        raise InvalidEvent("record carries no CloudEvent (no ce_specversion header)")
    validate(attributes)
    return Event(attributes, value or None)
