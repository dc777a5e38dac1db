"""The dispatcher's settings (environment variables, see the README)."""

from __future__ import annotations

from pydantic import Field

from keventing.settings import CommonSettings


class DispatcherSettings(CommonSettings):
    http_host: str = Field(default="0.0.0.0", alias="KEVENTING_HTTP_HOST")
    http_port: int = Field(default=8090, alias="KEVENTING_DISPATCHER_PORT")
    # Deliveries in flight per egress in unordered mode.
    max_in_flight: int = Field(default=50, alias="KEVENTING_MAX_IN_FLIGHT")
    # Per-request timeout when the DeliverySpec sets none (Knative's Kafka broker uses 600 s).
    default_timeout_seconds: float = Field(default=600.0, alias="KEVENTING_DEFAULT_DELIVERY_TIMEOUT_SECONDS")
    max_connections: int = Field(default=1000, alias="KEVENTING_MAX_CONNECTIONS")
    # Triggers on one Broker share one fetch and decode per partition (see dispatcher/sharedfetch.py).
    shared_fetch: bool = Field(default=True, alias="KEVENTING_SHARED_FETCH")
    # A fetch answers once this much is there or the wait is over (Kafka's fetch.min.bytes and
    # fetch.max.wait.ms): more than 1 byte trades latency for fewer, larger fetches (see the README).
    fetch_min_bytes: int = Field(default=1, ge=1, alias="KEVENTING_FETCH_MIN_BYTES")
    fetch_max_wait_ms: int = Field(default=100, ge=0, le=30_000, alias="KEVENTING_FETCH_MAX_WAIT_MS")

    @property
    def fetch_options(self) -> dict[str, int]:
        """The fetch settings of every consumer that reads for deliveries (the shared fetches' too)."""
        return {"fetch_min_bytes": self.fetch_min_bytes, "fetch_max_wait_ms": self.fetch_max_wait_ms}

    # Partitions of the dispatchers' assignment topic, which spreads KafkaSources' consumers over the
    # replicas: the most replicas that run any.
    assignment_partitions: int = Field(default=12, ge=1, alias="KEVENTING_DISPATCHER_PARTITIONS")

    @property
    def assignment_topic(self) -> str:
        return f"{self.instance}.dispatcher-assignments"

    @property
    def assignment_group(self) -> str:
        return f"{self.instance}.dispatchers"
