"""Knative's Kafka naming conventions, so operators recognise every topic and consumer group."""


def broker_topic(namespace: str, name: str) -> str:
    return f"knative-broker-{namespace}-{name}"


def trigger_group(namespace: str, name: str) -> str:
    return f"knative-trigger-{namespace}-{name}"


def channel_topic(namespace: str, name: str, kind: str = "KafkaChannel") -> str:
    """A channel's topic; an InMemoryChannel's has its own prefix, so that it never is a KafkaChannel's."""
    if kind == "InMemoryChannel":
        return f"knative-messaging-inmemory.{namespace}.{name}"
    return f"knative-messaging-kafka.{namespace}.{name}"


def subscription_group(namespace: str, channel: str, subscription_uid: str) -> str:
    """A Subscription's consumer group, as Knative's KafkaChannel names it: per channel and subscription UID."""
    return f"kafka.{namespace}.{channel}.{subscription_uid}"
