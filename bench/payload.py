"""The benchmark event: 1 KiB of JSON data, binary mode, the same for HTTP senders and Kafka producers."""

from __future__ import annotations

EVENT_TYPE = "dev.keventing.bench"
OTHER_TYPE = "dev.keventing.bench.unmatched"
SOURCE = "/bench"


def event_body(size: int = 1024) -> bytes:
    """A JSON object of exactly ``size`` bytes."""
    head, tail = b'{"payload":"', b'"}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


def http_headers(event_id: str, event_type: str = EVENT_TYPE) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": event_type,
        "ce-source": SOURCE,
        "content-type": "application/json",
    }


def kafka_headers(event_id: str, event_type: str = EVENT_TYPE) -> list[tuple[str, bytes]]:
    """What the receiver stores for the same event (CloudEvents Kafka binding, binary mode)."""
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_type", event_type.encode()),
        ("ce_source", SOURCE.encode()),
        ("content-type", b"application/json"),
    ]
