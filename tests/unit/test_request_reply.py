"""RequestReply without Kafka: the model's validation, what the controller publishes, and the correlation ids the
receiver signs and verifies (receiver.requestreply)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import broker_doc

from controller.reconciler import ControllerConfig, reconcile
from keventing.contractauth import ContractKeys
from keventing.kafka.connection import KafkaConnection
from keventing.resources import ResourceInvalid, ResourceKey, parse_resource
from keventing.resources.requestreply import timeout_seconds
from receiver.requestreply import RequestReplies

CONFIG = ControllerConfig(ingress_url="http://localhost:8080")


def _rr(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1alpha1",
        "kind": "RequestReply",
        "metadata": {"name": "rr", "namespace": "ns1"},
        "spec": {"brokerRef": {"kind": "Broker", "name": "default"}, **spec},
    }


def test_a_request_reply_publishes_an_ingress_on_its_brokers_topic_with_knatives_defaults() -> None:
    desired = reconcile([parse_resource(broker_doc("default", "ns1")), parse_resource(_rr())], CONFIG)
    status = desired.statuses[ResourceKey("RequestReply", "ns1", "rr")]
    assert status.ready
    assert status.address is not None and status.address.url == "http://localhost:8080/requestreplies/ns1/rr"
    ingress = desired.contract["RequestReply/ns1/rr"].ingress
    assert ingress is not None and ingress.request_reply is not None
    assert ingress.topic == "knative-broker-ns1-default" and not ingress.owns_topic
    spec = ingress.request_reply
    assert (spec.correlation_attribute, spec.reply_attribute, spec.timeout) == (
        "correlationid",
        "replyid",
        30.0,
    )


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"brokerRef": {"kind": "Channel", "name": "c"}}, "spec.brokerRef.kind", "must be Broker"),
        (
            {"brokerRef": {"kind": "Broker", "name": "b", "namespace": "x"}},
            "spec.brokerRef.namespace",
            "must not",
        ),
        ({"correlationAttribute": "type"}, "spec.correlationAttribute", "core CloudEvents attribute"),
        ({"replyAttribute": "Reply-Id"}, "spec.replyAttribute", "not a CloudEvents attribute name"),
        ({"replyAttribute": "correlationid"}, "spec.replyAttribute", "must differ"),
        ({"timeout": "soon"}, "spec.timeout", "not a duration"),
        ({"timeout": "PT0S"}, "spec.timeout", "more than 0"),
        ({"timeout": "2h"}, "spec.timeout", "at most 600"),
    ],
)
def test_bad_request_replies_are_refused_naming_the_field(
    spec: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(_rr(**spec)).validate_semantics()
    assert err.value.field == field
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("text", "seconds"), [("PT30S", 30.0), ("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5)]
)
def test_timeouts_are_read_in_iso_8601_and_in_gos_form(text: str, seconds: float) -> None:
    assert timeout_seconds(text) == seconds


def test_unused_knative_fields_are_named_in_warnings() -> None:
    rr = parse_resource(_rr(secrets=["my-keys"], delivery={"retry": 2}))
    warnings = rr.warnings()
    assert any("spec.secrets" in w for w in warnings) and any("spec.delivery" in w for w in warnings)


def _requests(*keys: bytes) -> RequestReplies:
    return RequestReplies(ContractKeys(list(keys)), KafkaConnection(bootstrap_servers="127.0.0.1:9"))


def test_a_correlation_id_is_verified_only_by_the_process_and_request_reply_that_signed_it() -> None:
    requests = _requests(b"k" * 32)
    value = requests.correlation_id("RequestReply/ns1/rr", "id:with:colons")
    event_id, signature, process = value.rsplit(":", 2)
    assert (event_id, process) == ("id:with:colons", requests.process)
    assert requests.verified_event_id("RequestReply/ns1/rr", value) == "id:with:colons"
    # Another RequestReply, a forged signature, another process: not this process's reply.
    assert requests.verified_event_id("RequestReply/ns1/other", value) is None
    assert requests.verified_event_id("RequestReply/ns1/rr", f"id:with:colons:{'A' * 43}:{process}") is None
    other = _requests(b"k" * 32)
    assert other.verified_event_id("RequestReply/ns1/rr", value) is None
    assert requests.verified_event_id("RequestReply/ns1/rr", "no-colons") is None


def test_a_correlation_id_signed_before_a_key_rotation_still_verifies() -> None:
    before = _requests(b"old" * 11)
    value = before.correlation_id("RequestReply/ns1/rr", "e-1")
    after = _requests(b"new" * 11, b"old" * 11)
    after.process = before.process  # the same process, its keys rotated
    assert after.verified_event_id("RequestReply/ns1/rr", value) == "e-1"
