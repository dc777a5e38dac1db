"""Knative's integrations (Apache Camel Kamelets in Knative), the parts that need no cloud account:
``sources.knative.dev/v1alpha1`` IntegrationSource with ``spec.timer`` and ``sinks.knative.dev/v1alpha1``
IntegrationSink with ``spec.log``.

keventing runs the timer itself, in the sources runner, with the CloudEvent attributes Knative's timer
connector gives its events; a log sink is a topic of its own whose events the dispatcher writes to its log.
The AWS integrations (``spec.aws``: s3, sqs, ddbStreams, sns) and a custom ``spec.template`` are refused
with a message saying so, never accepted and ignored.
"""

from __future__ import annotations

from typing import Any

from keventing.resources.base import Destination, Model, Resource, ResourceInvalid
from keventing.resources.sources import CloudEventOverrides, SourceResource

# What Knative's timer connector (kn-connector-source-timer) puts on every event.
TIMER_EVENT_TYPE = "dev.knative.connector.event.timer"
TIMER_EVENT_SOURCE = "dev.knative.eventing.timer-source"
TIMER_EVENT_SUBJECT = "timer-source"
# The timer-source Kamelet's defaults.
DEFAULT_PERIOD_MS = 1000
DEFAULT_CONTENT_TYPE = "text/plain"
# Faster than this is a load generator, not a timer.
MIN_PERIOD_MS = 10


class Timer(Model):
    period: int = DEFAULT_PERIOD_MS
    message: str
    contentType: str | None = None
    repeatCount: int | None = None


class IntegrationSourceSpec(Model):
    timer: Timer | None = None
    # Refused with a message (validate_semantics); typed loosely so that the message, not pydantic, says why.
    aws: dict[str, Any] | None = None
    template: dict[str, Any] | None = None
    sink: Destination
    ceOverrides: CloudEventOverrides | None = None


class IntegrationSource(SourceResource):
    API_VERSIONS = ("sources.knative.dev/v1alpha1",)
    KIND = "IntegrationSource"
    PLURAL = "integrationsources"

    spec: IntegrationSourceSpec

    def validate_semantics(self) -> None:
        super().validate_semantics()
        spec = self.spec
        if spec.aws is not None:
            kinds = ", ".join(sorted(spec.aws)) or "aws"
            raise ResourceInvalid(
                "spec.aws",
                f"the AWS integrations ({kinds}) are not supported by keventing: only spec.timer is",
            )
        if spec.template is not None:
            raise ResourceInvalid("spec.template", "a custom template is not supported by keventing")
        if spec.timer is None:
            raise ResourceInvalid("spec.timer", "required: keventing supports the timer integration only")
        if spec.timer.period < MIN_PERIOD_MS:
            raise ResourceInvalid("spec.timer.period", f"must be at least {MIN_PERIOD_MS} (milliseconds)")
        if spec.timer.repeatCount is not None and spec.timer.repeatCount < 1:
            raise ResourceInvalid(
                "spec.timer.repeatCount", f"must be at least 1, got {spec.timer.repeatCount}"
            )


class LogSpec(Model):
    """The log-sink Kamelet's options keventing honours; the Camel-only ones are accepted for Knative YAML
    and have no effect on a CloudEvent (exchange pattern, body type, streams)."""

    loggerName: str | None = None
    level: str | None = None
    logMask: bool | None = None
    marker: str | None = None
    multiline: bool | None = None
    showAllProperties: bool | None = None
    showBody: bool | None = None
    showBodyType: bool | None = None
    showExchangePattern: bool | None = None
    showHeaders: bool | None = None
    showProperties: bool | None = None
    showStreams: bool | None = None
    showCachedStreams: bool | None = None


LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF")


class IntegrationSinkSpec(Model):
    log: LogSpec | None = None
    aws: dict[str, Any] | None = None
    template: dict[str, Any] | None = None


class IntegrationSink(Resource):
    API_VERSIONS = ("sinks.knative.dev/v1alpha1",)
    KIND = "IntegrationSink"
    PLURAL = "integrationsinks"
    ADDRESSABLE = True

    spec: IntegrationSinkSpec

    def validate_semantics(self) -> None:
        spec = self.spec
        if spec.aws is not None:
            kinds = ", ".join(sorted(spec.aws)) or "aws"
            raise ResourceInvalid(
                "spec.aws", f"the AWS integrations ({kinds}) are not supported by keventing: only spec.log is"
            )
        if spec.template is not None:
            raise ResourceInvalid("spec.template", "a custom template is not supported by keventing")
        if spec.log is None:
            raise ResourceInvalid("spec.log", "required: keventing supports the log integration only")
        level = (spec.log.level or "INFO").upper()
        if level not in LOG_LEVELS:
            raise ResourceInvalid(
                "spec.log.level", f"{spec.log.level!r} is not one of {', '.join(LOG_LEVELS)}"
            )


KINDS: tuple[type[Resource], ...] = (IntegrationSource, IntegrationSink)
