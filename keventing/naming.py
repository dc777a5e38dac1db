"""Knative's Kafka naming conventions, so operators recognise every topic and consumer group."""


def broker_topic(namespace: str, name: str) -> str:
    return f"knative-broker-{namespace}-{name}"


def trigger_group(namespace: str, name: str) -> str:
    return f"knative-trigger-{namespace}-{name}"


def channel_topic(namespace: str, name: str) -> str:
    return f"knative-messaging-kafka.{namespace}.{name}"


def subscription_group(namespace: str, name: str) -> str:
    return f"kafka.{namespace}.{name}"
