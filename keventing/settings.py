"""Settings every service shares, read from environment variables (documented in the README)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from keventing.eventtypes import EventTypeLimits


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    # Knative's `bootstrap.servers`; the same variable points the CLI and the tests at a cluster.
    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", alias="KAFKA_BOOTSTRAP_SERVERS")
    # Names the control-plane topics (<instance>.resources, .status, .contract, ...) so that several
    # keventing installations can share one Kafka cluster.
    instance: str = Field(default="keventing", alias="KEVENTING_INSTANCE")
    # Replicas of the control-plane topics (resources, statuses, the contract); 3 on a production cluster.
    control_plane_replication_factor: int = Field(
        default=1, alias="KEVENTING_CONTROL_PLANE_REPLICATION_FACTOR"
    )
    log_level: str = Field(default="INFO", alias="KEVENTING_LOG_LEVEL")
    # EventType auto-creation's bounds (see keventing.eventtypes.EventTypeLimits).
    eventtype_max_per_addressable: int = Field(default=1000, ge=0, alias="KEVENTING_EVENTTYPE_MAX_PER_BROKER")
    eventtype_max_total: int = Field(default=10000, ge=0, alias="KEVENTING_EVENTTYPE_MAX_TOTAL")
    eventtype_create_rate: float = Field(default=50.0, gt=0, alias="KEVENTING_EVENTTYPE_CREATE_RATE")
    log_format: str = Field(default="json", alias="KEVENTING_LOG_FORMAT")
    # false: metrics record the event type as "" (one series per resource and code, whatever the types).
    metrics_event_type: bool = Field(default=True, alias="KEVENTING_METRICS_EVENT_TYPE")

    @property
    def eventtype_limits(self) -> EventTypeLimits:
        from keventing.eventtypes import EventTypeLimits  # settings import nothing else of keventing

        return EventTypeLimits(
            self.eventtype_max_per_addressable, self.eventtype_max_total, self.eventtype_create_rate
        )

    @property
    def resources_topic(self) -> str:
        return f"{self.instance}.resources"

    @property
    def status_topic(self) -> str:
        return f"{self.instance}.status"

    @property
    def contract_topic(self) -> str:
        return f"{self.instance}.contract"

    @property
    def source_reports_topic(self) -> str:
        return f"{self.instance}.source-reports"

    @property
    def topic_ledger_topic(self) -> str:
        """Which topics keventing created, and for which resource: only those are ever deleted."""
        return f"{self.instance}.topics"
