"""KafkaSource: from a Kafka record to the CloudEvent its sink receives, as Knative's KafkaSource makes it.

A record that already is a CloudEvent (binary mode with ``ce_*`` headers, or structured mode) passes
through unchanged. Any other record becomes an event of type ``dev.knative.kafka.event`` with

- ``id`` ``partition:<p>/offset:<o>``, ``subject`` ``partition:<p>#<o>``,
- ``source`` ``/apis/v1/namespaces/<ns>/kafkasources/<name>#<topic>``,
- ``time`` the record's timestamp, ``datacontenttype`` its ``content-type`` header (lower-cased),
- ``key`` and ``partitionkey`` the record key, read as the key-type label says (string by default),
- every other header as an extension ``kafkaheader<name>`` (the name lower-cased, other characters dropped),
- the record value as the data, byte for byte.
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

from keventing import events
from keventing.resources.sources import KAFKA_EVENT_TYPE, kafka_event_source

_NOT_EXTENSION_CHAR = re.compile(r"[^a-z0-9]")


class KafkaRecord(Protocol):
    """What a KafkaSource reads of a record (aiokafka's ConsumerRecord has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


def record_to_event(
    record: KafkaRecord,
    namespace: str,
    name: str,
    key_type: str | None = None,
    ce_overrides: Mapping[str, str] | None = None,
) -> events.Event:
    """The event a KafkaSource delivers for ``record``; ``ce_overrides`` extensions are added last."""
    event = _cloudevent(record) or _plain_record_event(record, namespace, name, key_type)
    if ce_overrides:
        event.attributes.update(ce_overrides)
    return event


def _cloudevent(record: KafkaRecord) -> events.Event | None:
    """The record's own CloudEvent, or None when it does not carry a valid one."""
    headers = list(record.headers or ())
    try:
        return events.from_kafka(headers, record.value)
    except events.InvalidEvent:
        return None


def _plain_record_event(record: KafkaRecord, namespace: str, name: str, key_type: str | None) -> events.Event:
    attributes = {
        "specversion": events.SPECVERSION,
        "id": f"partition:{record.partition}/offset:{record.offset}",
        "source": kafka_event_source(namespace, name, record.topic),
        "type": KAFKA_EVENT_TYPE,
        "subject": f"partition:{record.partition}#{record.offset}",
    }
    if record.timestamp is not None and record.timestamp >= 0:
        attributes["time"] = _rfc3339_millis(record.timestamp)
    key = read_key(record.key, key_type)
    if key is not None:
        attributes["partitionkey"] = key
        attributes["key"] = key
    for header, raw in record.headers or ():
        value = (raw or b"").decode("utf-8", errors="replace")
        if header.lower() == "content-type":
            attributes["datacontenttype"] = value.lower()
            continue
        attributes["kafkaheader" + _NOT_EXTENSION_CHAR.sub("", header.lower())] = value
    return events.Event(attributes, record.value)


def read_key(key: bytes | None, key_type: str | None) -> str | None:
    """The record key as the extension value: Knative's KeyDeserializer, rendered as a string.

    ``int`` reads 4 bytes big-endian, ``float`` 4 or 8 bytes (IEEE 754); keys of other lengths fall back to
    a string, as in Knative. ``byte-array`` is base64 (how a binary extension travels over HTTP).
    """
    if not key:
        return None
    if key_type == "int" and len(key) == 4:
        return str(int.from_bytes(key, "big", signed=True))
    if key_type == "float" and len(key) == 8:
        return repr(struct.unpack(">d", key)[0])
    if key_type == "float" and len(key) == 4:
        return _float32_text(struct.unpack(">f", key)[0])
    if key_type == "byte-array":
        return base64.b64encode(key).decode()
    return key.decode("utf-8", errors="replace")


def _float32_text(number: float) -> str:
    """The shortest decimal that reads back as the same 32-bit float (1.1, not 1.100000023841858)."""
    for precision in range(1, 10):
        text = f"{number:.{precision}g}"
        if struct.unpack(">f", struct.pack(">f", float(text)))[0] == number:
            return repr(float(text))
    return repr(number)


def _rfc3339_millis(timestamp_ms: int) -> str:
    moment = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{timestamp_ms % 1000:03d}Z"
