"""The controller's settings (environment variables, see the README)."""

from __future__ import annotations

from pydantic import Field

from keventing.settings import CommonSettings


class ControllerSettings(CommonSettings):
    # The URL the receiver is reachable at; Broker addresses are <ingress_url>/<namespace>/<name>.
    ingress_url: str = Field(default="http://localhost:8080", alias="KEVENTING_INGRESS_URL")
    # How the dispatcher and the sources reach the receiver, if not by ingress_url (e.g. http://receiver:8080).
    internal_ingress_url: str | None = Field(default=None, alias="KEVENTING_INTERNAL_INGRESS_URL")
    default_partitions: int = Field(default=10, alias="KEVENTING_DEFAULT_TOPIC_PARTITIONS")
    default_replication_factor: int = Field(default=1, alias="KEVENTING_DEFAULT_TOPIC_REPLICATION_FACTOR")
    event_type_auto_create: bool = Field(default=True, alias="KEVENTING_EVENTTYPE_AUTO_CREATE")
    resync_seconds: float = Field(default=30.0, alias="KEVENTING_RESYNC_SECONDS")
    http_host: str = Field(default="0.0.0.0", alias="KEVENTING_HTTP_HOST")
    http_port: int = Field(default=8091, alias="KEVENTING_CONTROLLER_PORT")
