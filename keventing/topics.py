"""Which Kafka topics a user's resource may name: the policy that keeps tenants and the control plane apart.

keventing's own topics (``<instance>.*``: the contract, the resource store, statuses, source reports, the
sources' and dispatchers' assignments, the topic ledger) and Kafka's internal ones (``__*``) are *reserved*:
no KafkaSink writes to them, no KafkaSource reads them, and the receiver and the dispatcher refuse to produce
to or consume from them whatever the contract says. Kafka treats ``.`` and ``_`` in topic names as the same
(their metric names collide), so the checks do too.
"""

from __future__ import annotations

from dataclasses import dataclass

from keventing import naming
from keventing.contract import Egress

# The control-plane topics every keventing instance has (``<instance>.<suffix>``); another instance's on a
# shared cluster are reserved as well.
CONTROL_PLANE_SUFFIXES = (
    "resources",
    "status",
    "contract",
    "source-reports",
    "source-assignments",
    "dispatcher-assignments",
    "topics",
)
NAMESPACE_PLACEHOLDER = "{namespace}"


def _kafka_equal(topic: str) -> str:
    """The form in which Kafka compares topic names for collisions."""
    return topic.replace(".", "_")


def reserved_reason(topic: str, instance: str) -> str | None:
    """Why ``topic`` is reserved to keventing or to Kafka, or None when it is not."""
    name = _kafka_equal(topic)
    if name.startswith(_kafka_equal(f"{instance}.")):
        return f"topic {topic} is reserved: keventing's control plane ({instance}.*) uses it"
    if name.startswith("__"):
        return f"topic {topic} is reserved: Kafka's internal topics (__*) are not for resources"
    if "." in topic and topic.rsplit(".", 1)[1] in CONTROL_PLANE_SUFFIXES:
        return f"topic {topic} is reserved: it is named like a keventing control-plane topic (<instance>.*)"
    return None


def egress_reserved_reason(egress: Egress, instance: str) -> str | None:
    """Why the dispatcher must not run ``egress`` (it reads or replies to a reserved topic), or None."""
    for topic in (*egress.topics, egress.reply.topic or ""):
        reason = reserved_reason(topic, instance) if topic else None
        if reason is not None:
            return reason
    return None


def is_resource_topic(topic: str) -> bool:
    """Whether ``topic`` is named like a Broker's or a Channel's topic (by Kafka's comparison)."""
    return naming.is_resource_topic(topic) or naming.is_resource_topic(topic.replace("_", "."))


@dataclass(frozen=True)
class TopicPolicy:
    """What a KafkaSink's or KafkaSource's topic may be, beyond never being reserved or another tenant's.

    ``user_prefixes`` (``KEVENTING_USER_TOPIC_PREFIXES``): when set, a topic must start with one of them;
    ``{namespace}`` in a prefix stands for the resource's namespace (``{namespace}.`` gives every namespace a
    topic space of its own). Empty: any topic that is not refused otherwise.
    """

    instance: str = "keventing"
    user_prefixes: tuple[str, ...] = ()

    def reserved(self, topic: str) -> str | None:
        return reserved_reason(topic, self.instance)

    def outside_prefixes(self, topic: str, namespace: str) -> str | None:
        if not self.user_prefixes:
            return None
        allowed = [p.replace(NAMESPACE_PLACEHOLDER, namespace) for p in self.user_prefixes]
        if topic.startswith(tuple(allowed)):
            return None
        return (
            f"topic {topic} is not allowed in namespace {namespace}: topics must start with "
            f"{' or '.join(repr(p) for p in allowed)} (KEVENTING_USER_TOPIC_PREFIXES)"
        )


def parse_prefixes(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip())
