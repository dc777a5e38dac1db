"""Input refused at the edge with a message: CloudEvents attributes, DeliverySpecs, `kev apply` files, and
the receiver's answers while it is starting."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import broker_doc, trigger_doc
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from dispatcher.backoff import backoff_seconds
from kev.cli.main import app as cli
from keventing import events
from keventing.contract import Ingress
from keventing.resources.base import ResourceInvalid
from keventing.resources.registry import parse_resource
from receiver.app import ReceiverApp
from receiver.ingress import record_bytes
from receiver.metrics import IngressMetrics
from receiver.settings import ReceiverSettings

CONTEXT = {"specversion": "1.0", "id": "1", "type": "t", "source": "/s"}

# ------------------------------------------------------------------------------------------ CloudEvents


@pytest.mark.parametrize("character", ["\r", "\n", "\x00", "\x1b", "\x7f", "\x85"])
def test_control_characters_in_an_attribute_value_are_invalid_naming_the_attribute(character: str) -> None:
    with pytest.raises(events.InvalidEvent, match="attribute datacontenttype contains the control character"):
        events.validate({**CONTEXT, "datacontenttype": f"application/json{character}x: y"})


def test_an_attribute_name_with_a_trailing_newline_is_invalid() -> None:
    with pytest.raises(events.InvalidEvent, match="invalid attribute name"):
        events.validate({**CONTEXT, "ext\n": "x"})


def test_attribute_names_longer_than_20_characters_are_accepted_as_the_spec_only_recommends() -> None:
    events.validate({**CONTEXT, "a" * 40: "x"})


def test_non_ascii_attribute_values_stay_valid() -> None:
    events.validate({**CONTEXT, "subject": "grüße 🎉"})


def test_structured_data_nested_deeper_than_the_bound_is_invalid_not_an_encoder_error() -> None:
    data: object = "leaf"
    for _ in range(events.MAX_DATA_DEPTH + 1):
        data = {"a": data}
    with pytest.raises(events.InvalidEvent, match="nested more than 64 levels"):
        events.from_structured_json(orjson.dumps({**CONTEXT, "data": data}))


def test_structured_data_at_the_bound_is_accepted() -> None:
    data: object = 1
    for _ in range(events.MAX_DATA_DEPTH):
        data = [data]
    event = events.from_structured_json(orjson.dumps({**CONTEXT, "data": data}))
    assert event.data is not None and event.data.startswith(b"[[[")


def test_record_size_counts_headers() -> None:
    small = record_bytes(None, b"{}", [])
    assert record_bytes(None, b"{}", [("ce_big", b"x" * 1000)]) >= small + 1000


# ------------------------------------------------------------------------------------------ DeliverySpec


def _trigger(**delivery: Any) -> dict[str, Any]:
    return trigger_doc("t", "ns", "default", "http://sink.example/", delivery=delivery)


@pytest.mark.parametrize(
    ("delivery", "field", "message"),
    [
        ({"retry": 2000, "backoffDelay": "PT0S"}, "spec.delivery.retry", "between 0 and 100"),
        ({"retry": -1}, "spec.delivery.retry", "between 0 and 100"),
        ({"backoffDelay": "PT99999999999S"}, "spec.delivery.backoffDelay", "maximum of P1D"),
        ({"timeout": "PT99999999999S"}, "spec.delivery.timeout", "maximum of P1D"),
        ({"retryAfterMax": "P2D"}, "spec.delivery.retryAfterMax", "maximum of P1D"),
        ({"backoffMax": "soon"}, "spec.delivery.backoffMax", "soon"),
        ({"format": "xml"}, "spec.delivery.format", "json"),
    ],
)
def test_delivery_outside_its_bounds_is_invalid(delivery: dict, field: str, message: str) -> None:
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(_trigger(**delivery))
    assert field in str(err.value) and message in str(err.value)


def test_delivery_at_its_bounds_is_valid() -> None:
    parse_resource(
        _trigger(
            retry=100,
            backoffDelay="P1D",
            timeout="P1D",
            retryAfterMax="PT24H",
            backoffMax="P1D",
            format="json",
        )
    )


@pytest.mark.parametrize("uri", ["ftp://sink.example/", "file:///etc/passwd", "sink.example/path"])
def test_a_subscriber_that_is_not_http_is_invalid(uri: str) -> None:
    with pytest.raises(ResourceInvalid, match="is not an http:// or https:// URI"):
        parse_resource(trigger_doc("t", "ns", "default", uri))


def test_a_dead_letter_sink_that_is_not_http_is_invalid() -> None:
    with pytest.raises(ResourceInvalid, match="spec.delivery.deadLetterSink.uri"):
        parse_resource(_trigger(deadLetterSink={"uri": "ftp://dls.example/"}))


def test_an_exponential_backoff_of_2000_retries_does_not_overflow() -> None:
    assert backoff_seconds("exponential", 0.0, 2000) == 0.0
    assert backoff_seconds("exponential", 1.0, 2000) == 24 * 3600
    assert backoff_seconds("linear", 1.0, 10**9) == 24 * 3600


def test_a_document_nested_too_deep_is_invalid() -> None:
    document = broker_doc("b", "ns")
    for _ in range(200):
        document["spec"] = {"x": document["spec"]}
    with pytest.raises(ResourceInvalid, match="nested more than 128 levels"):
        parse_resource(document)


# ------------------------------------------------------------------------------------------ kev apply


def _text(output: str) -> str:
    return " ".join(output.split())  # the console wraps long lines


def test_apply_of_a_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broker.yaml"
    path.write_bytes(b"kind: Broker\nmetadata:\n  name: caf\xe9\n")
    result = CliRunner().invoke(cli, ["apply", "-f", str(path)])
    assert result.exit_code == 1
    assert "not UTF-8" in _text(result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_apply_of_stdin_that_is_not_utf8_is_a_clear_error() -> None:
    result = CliRunner().invoke(cli, ["apply", "-f", "-"], input=b"kind: \xff\n")
    assert result.exit_code == 1
    assert "not UTF-8" in _text(result.output)


def test_apply_of_a_filter_nested_600_deep_is_a_clear_error(tmp_path: Path) -> None:
    # Written by hand: JSON is YAML, and no encoder writes 600 levels.
    nested = '{"not": ' * 600 + '{"exact": {"type": "x"}}' + "}" * 600
    trigger = orjson.dumps(trigger_doc("t", "ns", "default", "http://sink.example/", filters=["FILTER"]))
    path = tmp_path / "trigger.yaml"
    path.write_text(trigger.decode().replace('"FILTER"', nested))
    result = CliRunner().invoke(cli, ["apply", "-f", str(path)])
    assert result.exit_code == 1
    assert "nested" in _text(result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# ------------------------------------------------------------------------------------------ start-up


def _post(app: ReceiverApp, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {
        "type": "http",
        "path": path,
        "method": "POST",
        "headers": [(b"ce-specversion", b"1.0"), (b"ce-id", b"1"), (b"ce-type", b"t"), (b"ce-source", b"/s")],
    }
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


def _app() -> ReceiverApp:
    return ReceiverApp(ReceiverSettings(), IngressMetrics(CollectorRegistry()))


def test_before_the_contract_is_loaded_a_request_is_503_with_retry_after_not_404() -> None:
    status, headers, body = _post(_app(), "/ns/default")
    assert status == 503
    assert headers[b"retry-after"] == b"5"
    assert b"contract" in body


def test_without_a_kafka_producer_a_request_is_503_with_retry_after_not_500() -> None:
    app = _app()
    app.table.put(
        Ingress(id="i", kind="Broker", namespace="ns", name="default", path="/ns/default", topic="t")
    )
    app.contract.synced = True
    status, headers, body = _post(app, "/ns/default")
    assert status == 503
    assert headers[b"retry-after"] == b"5"
    assert b"not connected to Kafka yet" in body


def test_after_the_contract_is_loaded_an_unknown_path_is_404() -> None:
    app = _app()
    app.contract.synced = True
    assert _post(app, "/ns/nope")[0] == 404


def test_a_field_keventing_does_not_serve_is_refused_by_name() -> None:
    document = trigger_doc("t", "ns", "default", "http://sink.example/")
    document["spec"]["subscriber"]["bogus"] = 1
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(document)
    assert str(err.value) == (
        "spec.subscriber.bogus: unknown field: keventing does not serve it for Trigger (`kev explain trigger`)"
    )
