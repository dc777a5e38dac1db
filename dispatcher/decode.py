"""From Kafka record to the event an egress filters and delivers.

Binary-mode records are read from their headers alone (the value is passed through untouched); records in
structured mode are parsed. An egress kind that needs another mapping (KafkaSource turning plain records
into CloudEvents) plugs in here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiokafka import ConsumerRecord

from dispatcher import kafkasource
from keventing import events
from keventing.contract import Egress
from keventing.tracing import from_record

Decoder = Callable[[ConsumerRecord], events.Event | None]
Accepts = Callable[[Mapping[str, str]], bool]


def record_decoder(egress: Egress) -> Decoder:
    """The decoder for ``egress``; it returns None for a record that carries no CloudEvent."""
    if egress.kind == "KafkaSource":
        return kafka_source_decoder(egress)
    return decode_cloudevent


def kafka_source_decoder(egress: Egress) -> Decoder:
    """A KafkaSource turns every record into an event: its own CloudEvent, or one made from the record."""

    def decode(record: ConsumerRecord) -> events.Event:
        event = kafkasource.record_to_event(
            record, egress.namespace, egress.name, egress.key_type, egress.ce_overrides
        )
        event.meta["timestamp"] = record.timestamp
        return event

    return decode


def decode_cloudevent(record: ConsumerRecord) -> events.Event | None:
    headers = record.headers or ()
    attributes = events.attributes_from_kafka(headers)
    if "specversion" in attributes:
        return events.Event(attributes, record.value or None, _meta(record))
    try:
        event = events.from_kafka(headers, record.value)  # structured mode
    except events.InvalidEvent:
        return None
    event.meta = _meta(record)
    return event


def _meta(record: ConsumerRecord) -> dict[str, object]:
    """The record's timestamp, and the trace context it carries (``trace``) when it carries one."""
    meta: dict[str, object] = {"timestamp": record.timestamp}
    carried = from_record(record.headers or ())
    if carried is not None:
        meta["trace"] = carried
    return meta


def record_selector(egress: Egress, accepts: Accepts) -> Decoder:
    """The decoder of ``egress`` that also returns None for an event ``accepts`` refuses, and for a record
    meant for another egress alone (a redriven dead letter, ``events.TARGET_HEADER``). A binary-mode record
    is filtered on its headers' attributes before any event is built: with many Triggers on one Broker most
    records are filtered out, and that is the fan-out's hot path."""
    decode = record_decoder(egress)

    def select(record: ConsumerRecord) -> events.Event | None:
        event = decode(record)
        return event if event is not None and accepts(event.attributes) else None

    if decode is not decode_cloudevent:
        return select  # a KafkaSource's records are the user's: no header of theirs means anything here
    own = egress.id
    target_of = events.target_of

    def select_cloudevent(record: ConsumerRecord) -> events.Event | None:
        target = target_of(record.headers)
        if target is not None and target != own:
            return None
        attributes = events.attributes_from_kafka(record.headers or ())
        if "specversion" not in attributes:
            return select(record)  # structured mode, or no CloudEvent at all
        if not accepts(attributes):
            return None
        return events.Event(attributes, record.value or None, _meta(record))

    return select_cloudevent
