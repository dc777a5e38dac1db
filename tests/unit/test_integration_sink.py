"""IntegrationSink (log): its topic, ingress and log egress, and the dispatcher's log: destination."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pytest

from controller.reconciler import ControllerConfig, reconcile
from dispatcher.logsink import LoggingPost
from dispatcher.transport import Response
from keventing import events
from keventing.resources import ResourceInvalid, ResourceKey, parse_resource


def _sink_doc(**log: object) -> dict:
    return {
        "apiVersion": "sinks.knative.dev/v1alpha1",
        "kind": "IntegrationSink",
        "metadata": {"name": "audit-log", "namespace": "ns"},
        "spec": {"log": log},
    }


def test_a_log_integration_sink_gets_a_topic_an_address_and_a_log_egress() -> None:
    desired = reconcile([parse_resource(_sink_doc(level="warn", showHeaders=True))], ControllerConfig())
    status = desired.statuses[ResourceKey("IntegrationSink", "ns", "audit-log")]
    assert status.ready and status.address.url == "http://localhost:8080/integrationsinks/ns/audit-log"
    topic = "knative-integrationsink.ns.audit-log"
    assert topic in desired.topics
    assert desired.contract["IntegrationSink/ns/audit-log"].ingress.topic == topic
    egress = desired.contract["IntegrationSink/ns/audit-log/log"].egress
    assert egress.topics == (topic,) and egress.consumer_group == topic
    assert egress.destination == "log:ns/audit-log?level=WARN&headers=true&body=true&multiline=false"


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"aws": {"sns": {"arn": "t"}}}, "spec.aws", "AWS integrations (sns)"),
        ({}, "spec.log", "log integration only"),
        ({"log": {"level": "LOUD"}}, "spec.log.level", "'LOUD' is not one of"),
    ],
)
def test_what_keventing_does_not_run_of_an_integration_sink_is_refused(
    spec: dict, field: str, message: str
) -> None:
    document = _sink_doc()
    document["spec"] = spec
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(document)
    assert field in str(err.value) and message in str(err.value)


class Network:
    def __init__(self) -> None:
        self.urls: list[str] = []

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float | None,
        ca_certs: str | None = None,
        audience: str | None = None,
    ) -> Response:
        self.urls.append(url)
        return Response(200)


async def test_log_destinations_are_logged_and_never_reach_the_network(
    caplog: pytest.LogCaptureFixture,
) -> None:
    network = Network()
    post = LoggingPost(network)
    event = events.Event({"specversion": "1.0", "id": "e-1", "type": "t", "source": "/s"}, b'{"a":1}')
    headers, body = events.to_http_binary(event)
    with caplog.at_level(logging.INFO, logger="keventing.integrationsink"):
        answer = await post.post(
            "log:ns/audit?level=INFO&headers=true&body=true&logger=orders", headers, body, 5
        )
        quiet = await post.post("log:ns/audit?level=OFF", headers, body, 5)
        bodiless = await post.post("log:ns/audit?level=ERROR&headers=false&body=false", headers, body, 5)
    assert (answer.status, quiet.status, bodiless.status) == (202, 202, 202)
    assert network.urls == []
    first, second = caplog.records
    assert (first.levelno, first.sink, first.logger_name, first.data) == (
        logging.INFO,
        "ns/audit",
        "orders",
        '{"a":1}',
    )
    assert first.attributes["id"] == "e-1"
    assert (
        second.levelno == logging.ERROR and not hasattr(second, "data") and not hasattr(second, "attributes")
    )
    # Every other URL goes to the network unchanged.
    assert (await post.post("http://sub/", headers, body, 5)).status == 200
    assert network.urls == ["http://sub/"]
