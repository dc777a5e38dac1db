"""The Knative documentation corpus (tests/corpus/knative-docs) and what `kev apply --dry-run` must say of it.

Every file is one Knative document copied from knative/docs (its header names the file and commit). All must
be accepted except EXPECTED_REFUSALS: each is a manifest Knative itself rejects (a template whose placeholders
are not valid values, or a typo in the docs), one Knative admits but that can never work, or a kind or field
keventing does not serve. The message is exactly what `kev apply` prints, so a change of behaviour either way
fails the tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

CORPUS = Path(__file__).resolve().parent / "corpus" / "knative-docs"

KNATIVE_REJECTS = "knative-rejects"
# Knative admits it (its webhook does not check this) but the resource can never work: keventing refuses it.
NEVER_WORKS = "never-works"
NOT_SERVED = "not-served"


def _name(name: str) -> str:
    return (
        f"metadata.name: '{name}' is not a valid name: lower-case letters, digits, '-' and '.', starting and "
        "ending with a letter or digit, at most 253 characters"
    )


def _not_a_kind(kind: str) -> str:
    return (
        f"kind: '{kind}' is not a kind keventing serves (ApiServerSource, Broker, Channel, ConfigMap, "
        "ContainerSource, EventPolicy, EventTransform, EventType, InMemoryChannel, IntegrationSink, "
        "IntegrationSource, JobSink, KafkaChannel, KafkaSink, KafkaSource, Parallel, PingSource, RequestReply, "
        "Secret, Sequence, "
        "SinkBinding, Subscription, Trigger)"
    )


_HASH = "spec.jsonata.expression: invalid JSONata expression: The symbol # cannot be used as a unary operator"
_PLACEHOLDER_EXPRESSION = (
    "template: the expression '# transformation expression' is a placeholder, not JSONata: Knative's webhook "
    "does not parse JSONata, so it admits the resource and the transform is never Ready"
)


class Refusal(NamedTuple):
    reason: str  # KNATIVE_REJECTS, NEVER_WORKS or NOT_SERVED
    why: str  # why Knative rejects it, why it never works, or what keventing does not serve
    message: str  # what `kev apply` prints after "<file>: <Kind> '<name>' is invalid: "


EXPECTED_REFUSALS: dict[str, Refusal] = {
    "create-broker-1.yaml": Refusal(
        KNATIVE_REJECTS,
        "template: '<broker-name>' and '<namespace>' are not names Kubernetes accepts",
        _name("<broker-name>"),
    ),
    "ping-source-1.yaml": Refusal(
        KNATIVE_REJECTS,
        "template: the name, namespace and '<cron-schedule>' are placeholders",
        _name("<pingsource-name>"),
    ),
    "ping-source-2.yaml": Refusal(
        KNATIVE_REJECTS,
        "template: the name, namespace and '<cron-schedule>' are placeholders",
        _name("<pingsource-name>"),
    ),
    "create-default-channel-1.yaml": Refusal(
        KNATIVE_REJECTS,
        "template: '<example-channel>' and '<namespace>' are not names Kubernetes accepts",
        _name("<example-channel>"),
    ),
    "subscriptions-1.yaml": Refusal(
        KNATIVE_REJECTS,
        "template: '<subscription-name>' is not a name Kubernetes accepts",
        _name("<subscription-name>"),
    ),
    "containersource-2.yaml": Refusal(
        KNATIVE_REJECTS,
        "template: '<containersource-name>' is not a name Kubernetes accepts",
        _name("<containersource-name>"),
    ),
    "create-default-channel-2.yaml": Refusal(
        KNATIVE_REJECTS,
        "template: the name, namespace and channelTemplate kind '<channel-template-kind>' are placeholders",
        _name("<example-channel>"),
    ),
    "event-registry-2.yaml": Refusal(
        KNATIVE_REJECTS,
        "the sink's apiVersion, kind and name are written directly under sink, not under sink.ref: unknown "
        "fields of a Destination, which then has neither ref nor uri (Knative: expected exactly one, got "
        "neither)",
        "spec.sink.apiVersion: unknown field: keventing does not serve it for KafkaSource "
        "(`kev explain kafkasource`)",
    ),
    "delivery-timeout-1.yaml": Refusal(
        KNATIVE_REJECTS,
        "a Subscription without spec.channel: Knative's webhook says missing field(s): spec.channel",
        "spec.channel: Field required",
    ),
    "kafka-source-3.yaml": Refusal(
        KNATIVE_REJECTS,
        "template: retry '<integer>' is not an integer (the CRD schema refuses it)",
        "spec.delivery.retry: Input should be a valid integer, unable to parse string as an integer",
    ),
    "kafka-source-4.yaml": Refusal(
        KNATIVE_REJECTS,
        "the docs lost the indentation: metadata is empty (no name) and spec's fields are at the top level",
        "metadata.name: is required",
    ),
    "kafka-source-5.yaml": Refusal(
        KNATIVE_REJECTS,
        "the docs lost the indentation: spec is empty (no topics, bootstrapServers or sink) and its fields "
        "are unknown top-level fields",
        "spec: Field required",
    ),
    "kafka-binding-source-1.yaml": Refusal(
        KNATIVE_REJECTS,
        "template: net.sasl.enable / net.tls.enable are the string placeholders KAFKA_SASL_ENABLE / "
        "KAFKA_TLS_ENABLE where the CRD wants a boolean, and spec.resources is not a KafkaSource field "
        "(it was eventing-contrib's)",
        "spec.resources: unknown field: keventing does not serve it for KafkaSource (`kev explain kafkasource`)",
    ),
    "triggers-3.yaml": Refusal(
        KNATIVE_REJECTS,
        "one filters entry with two dialects (exact and suffix): Knative's webhook says multiple dialects "
        "found, filters can have only one dialect set",
        "spec.filters[0]: has 2 dialects (exact, suffix) but a filter takes exactly one; put each in its own "
        "list entry (entries are ANDed) or combine them with all/any",
    ),
    "triggers-5.yaml": Refusal(
        KNATIVE_REJECTS,
        "spec.filters written as a mapping: the CRD schema wants a list",
        "spec.filters: Input should be a valid list",
    ),
    "triggers-6.yaml": Refusal(
        KNATIVE_REJECTS,
        "subscriber indented under filter: the Trigger has no spec.subscriber (missing field) and "
        "filter.subscriber is an unknown field",
        "spec.filter.subscriber: unknown field: keventing does not serve it for Trigger (`kev explain trigger`)",
    ),
    "transform-jsonata-2.yaml": Refusal(
        NEVER_WORKS,
        "'# Request transformation' is not a JSONata comment (JSONata's are /* */): Knative's webhook does "
        "not parse JSONata, so it admits the resource and the transform fails at run time; keventing "
        "compiles the expression at apply",
        _HASH,
    ),
    "kafka-broker-5.yaml": Refusal(
        NEVER_WORKS,
        "template: '<my-topic-name>' is not a legal Kafka topic name; Knative admits the Broker and it never "
        "becomes Ready (the topic cannot exist), keventing checks the name at apply",
        "metadata.annotations[kafka.eventing.knative.dev/external.topic]: '<my-topic-name>' is not a legal "
        "topic name: 1 to 249 of a-z, A-Z, 0-9, '.', '_' and '-'",
    ),
    "job-sink-3.yaml": Refusal(
        KNATIVE_REJECTS,
        "subscriber indented under filter (as in triggers-6): no spec.subscriber",
        "spec.filter.subscriber: unknown field: keventing does not serve it for Trigger (`kev explain trigger`)",
    ),
    "integration-sink-aws-sqs-1.yaml": Refusal(
        NOT_SERVED,
        "the AWS integrations (keventing's IntegrationSink serves log only); the docs also mis-indent name "
        "under auth.secret.ref",
        "spec.aws: the AWS integrations (auth, sqs) are not supported by keventing: only spec.log is",
    ),
    "transforms-4.yaml": Refusal(
        NEVER_WORKS, "the same request-reply-transform as transform-jsonata-2", _HASH
    ),
    "transforms-6.yaml": Refusal(NEVER_WORKS, _PLACEHOLDER_EXPRESSION, _HASH),
    "transforms-7.yaml": Refusal(NEVER_WORKS, _PLACEHOLDER_EXPRESSION, _HASH),
    "sugar-2.yaml": Refusal(
        KNATIVE_REJECTS,
        "the docs lost the indentation: metadata is empty (no name) and name, namespace and labels are "
        "unknown top-level fields of the ConfigMap",
        "metadata.name: is required",
    ),
    "rabbitmq-broker-1.yaml": Refusal(
        NOT_SERVED,
        "RabbitmqBrokerConfig (eventing-rabbitmq's kind; its name is also a placeholder)",
        _not_a_kind("RabbitmqBrokerConfig"),
    ),
    "rabbitmq-broker-2.yaml": Refusal(
        KNATIVE_REJECTS,
        "template: '<broker-name>' is not a name Kubernetes accepts (a RabbitMQBroker class Broker is "
        "otherwise a Broker keventing serves)",
        _name("<broker-name>"),
    ),
    "integration-source-aws-ddb-1.yaml": Refusal(
        NOT_SERVED,
        "the AWS integrations (IntegrationSource serves timer only); name is mis-indented as in aws-s3",
        "spec.aws: the AWS integrations (auth, ddbStreams) are not supported by keventing: only spec.timer is",
    ),
    "integration-sink-aws-s3-1.yaml": Refusal(
        NOT_SERVED,
        "the AWS integrations (IntegrationSink serves log only)",
        "spec.aws: the AWS integrations (auth, s3) are not supported by keventing: only spec.log is",
    ),
    "integration-source-aws-sqs-1.yaml": Refusal(
        NOT_SERVED,
        "the AWS integrations (IntegrationSource serves timer only)",
        "spec.aws: the AWS integrations (auth, sqs) are not supported by keventing: only spec.timer is",
    ),
    "integration-source-aws-s3-1.yaml": Refusal(
        NOT_SERVED,
        "the AWS integrations (keventing's IntegrationSource serves timer only); the docs also mis-indent "
        "name under auth.secret.ref",
        "spec.aws: the AWS integrations (auth, s3) are not supported by keventing: only spec.timer is",
    ),
}


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.yaml"))
