"""Knative's Kafka naming conventions, so operators recognise every topic and consumer group, made injective.

Knative names a Broker's topic ``knative-broker-<namespace>-<name>``: Broker ``a/x-y`` and Broker ``a-x/y``
would share one topic. A namespace is a DNS label (no ``.``), so the names stay Knative's where the namespace
has no ``-`` (the first ``-`` after the prefix ends the namespace) and become ``knative-broker.<namespace>.<name>``
where it has one (the first ``.`` ends the namespace; no Knative-style name starts ``knative-broker.``). The same
holds for Trigger groups. Channel topics and Subscription groups separate the namespace with ``.`` already.
Names given before this scheme are kept (see :func:`legacy_broker_topic`, :mod:`controller.brokers`).
"""

from __future__ import annotations

import hashlib
import re

# Kubernetes' DNS-1123 label: what a namespace must be, and what makes the names above injective.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_LABEL_MAX = 63

# Status annotations naming a Broker's topic, and a Trigger's consumer group and topic.
TOPIC_ANNOTATION = "kafka.eventing.knative.dev/topic"
GROUP_ANNOTATION = "kafka.eventing.knative.dev/group.id"
# Set on the status of a resource whose topic is on a cluster of its own (its bootstrap servers, no more).
BOOTSTRAP_SERVERS_ANNOTATION = "kafka.eventing.knative.dev/bootstrap.servers"

BROKER_TOPIC_PREFIXES = ("knative-broker-", "knative-broker.")
CHANNEL_TOPIC_PREFIX = "knative-messaging-kafka."
TRIGGER_GROUP_PREFIXES = ("knative-trigger-", "knative-trigger.")


def is_dns_label(value: str) -> bool:
    return len(value) <= DNS_LABEL_MAX and DNS_LABEL.fullmatch(value) is not None


# Kubernetes' DNS-1123 subdomain: what the name of a Knative resource (or a ConfigMap, Secret) must be.
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_SUBDOMAIN_MAX = 253


def is_dns_subdomain(value: str) -> bool:
    return len(value) <= DNS_SUBDOMAIN_MAX and DNS_SUBDOMAIN.fullmatch(value) is not None


def _injective(prefix: str, namespace: str, name: str) -> str:
    if "-" in namespace:
        return f"{prefix}.{namespace}.{name}"
    return f"{prefix}-{namespace}-{name}"


def broker_topic(namespace: str, name: str) -> str:
    return _injective("knative-broker", namespace, name)


def legacy_broker_topic(namespace: str, name: str) -> str:
    """Knative's own name, which keventing gave every Broker before the names were made injective."""
    return f"knative-broker-{namespace}-{name}"


def trigger_group(namespace: str, name: str) -> str:
    return _injective("knative-trigger", namespace, name)


def legacy_trigger_group(namespace: str, name: str) -> str:
    return f"knative-trigger-{namespace}-{name}"


IN_MEMORY_CHANNEL_TOPIC_PREFIX = "knative-messaging-inmemory."


def channel_topic(namespace: str, name: str, kind: str = "KafkaChannel") -> str:
    """A channel's topic; an InMemoryChannel's has its own prefix, so that it never is a KafkaChannel's."""
    if kind == "InMemoryChannel":
        return f"{IN_MEMORY_CHANNEL_TOPIC_PREFIX}{namespace}.{name}"
    return f"{CHANNEL_TOPIC_PREFIX}{namespace}.{name}"


def subscription_group(namespace: str, channel: str, subscription_uid: str) -> str:
    """A Subscription's consumer group, as Knative's KafkaChannel names it: per channel and subscription UID."""
    return f"kafka.{namespace}.{channel}.{subscription_uid}"


# An IntegrationSink's topic, and the consumer group that logs it (a namespace has no ".": injective).
INTEGRATION_SINK_PREFIX = "knative-integrationsink."


def integration_sink_topic(namespace: str, name: str) -> str:
    return f"{INTEGRATION_SINK_PREFIX}{namespace}.{name}"


# A JobSink's topic, and the consumer group that makes its Jobs (injective as the IntegrationSink's).
JOB_SINK_PREFIX = "knative-jobsink."


def job_sink_topic(namespace: str, name: str) -> str:
    return f"{JOB_SINK_PREFIX}{namespace}.{name}"


def is_resource_topic(topic: str) -> bool:
    """Whether ``topic`` has the form of a Broker's, a Channel's, an IntegrationSink's or a JobSink's topic
    (whether or not that resource exists)."""
    return topic.startswith(
        (
            *BROKER_TOPIC_PREFIXES,
            CHANNEL_TOPIC_PREFIX,
            IN_MEMORY_CHANNEL_TOPIC_PREFIX,
            INTEGRATION_SINK_PREFIX,
            JOB_SINK_PREFIX,
        )
    )


# Kafka's rule for topic names (org.apache.kafka.common.internals.Topic).
_LEGAL_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def topic_name_problem(topic: str) -> str | None:
    """What makes ``topic`` a name Kafka refuses, or None when Kafka accepts it."""
    if topic in (".", ".."):
        return f"{topic!r} is not a legal topic name"
    if not _LEGAL_TOPIC.fullmatch(topic):
        return f"{topic!r} is not a legal topic name: 1 to 249 of a-z, A-Z, 0-9, '.', '_' and '-'"
    return None


_MD5_HEX = 32


def child_name(parent: str, suffix: str) -> str:
    """Knative's ``kmeta.ChildName``: ``parent + suffix``, made to fit a DNS label with an md5 of the parent
    (or, when the suffix alone leaves no room for that, of both) so that the names stay distinct."""
    if len(parent) + len(suffix) <= DNS_LABEL_MAX:
        return parent + suffix
    room = DNS_LABEL_MAX - _MD5_HEX
    if room - len(suffix) <= 0:
        name = parent[:room] + hashlib.md5((parent + suffix).encode()).hexdigest()  # noqa: S324 (a name)
        name += suffix[: max(DNS_LABEL_MAX - len(name), 0)]
        return name.rstrip("-")
    return parent[: room - len(suffix)] + hashlib.md5(parent.encode()).hexdigest() + suffix  # noqa: S324


def oidc_service_account(api_version: str, kind: str, name: str) -> str:
    """The ServiceAccount whose tokens a Trigger, Subscription or source sends with (authentication-oidc):
    Knative's ``<name>oidc-<group>-<kind>``, lower case, as ``GetOIDCServiceAccountNameForResource``."""
    group = api_version.rpartition("/")[0]
    return child_name(name, f"oidc-{group}-{kind}").lower()
