"""IntegrationSink (``spec.log``): a topic and an ingress, and an egress that writes each event to the
dispatcher's log (the ``log:`` destination, :mod:`dispatcher.logsink`).

The sink's address takes events like any addressable: a 202 means the event is on its topic. The dispatcher
then logs it, as Knative's log-sink Kamelet would print it, at the level the sink names.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from controller.context import Context, Contribution
from controller.topicsinks import TopicSink, reconcile_topic_sink
from keventing import naming
from keventing.contract import DeliveryPolicy
from keventing.resources import Status
from keventing.resources.integrations import IntegrationSink


def integration_sink_path(namespace: str, name: str) -> str:
    return f"/integrationsinks/{namespace}/{name}"


def log_destination(sink: IntegrationSink) -> str:
    """The ``log:`` URL the dispatcher writes the sink's events to, with the options it honours."""
    log = sink.spec.log
    assert log is not None
    options = {
        "level": (log.level or "INFO").upper(),
        "headers": "true" if log.showHeaders else "false",
        # The log-sink Kamelet shows the body unless told not to.
        "body": "false" if log.showBody is False else "true",
        "multiline": "true" if log.multiline else "false",
    }
    if log.loggerName:
        options["logger"] = log.loggerName
    if log.marker:
        options["marker"] = log.marker
    return f"log:{quote(sink.namespace)}/{quote(sink.name)}?{urlencode(options)}"


def reconcile_integration_sinks(ctx: Context) -> Contribution:
    out = Contribution()
    for sink in ctx.of(IntegrationSink):
        plan = TopicSink(
            topic=naming.integration_sink_topic(sink.namespace, sink.name),
            path=integration_sink_path(sink.namespace, sink.name),
            egress="log",
            destination=log_destination(sink),
            delivery=DeliveryPolicy(retry=0),
            topic_message="its events are logged",
        )
        reconcile_topic_sink(ctx, out, sink, plan, Status(observedGeneration=sink.metadata.generation))
    return out
