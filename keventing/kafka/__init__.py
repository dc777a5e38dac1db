"""Kafka client configuration, admin helpers and the compacted topics keventing keeps its state in."""
