"""Kafka client configuration, admin helpers and the embedded-Kafka launcher."""
