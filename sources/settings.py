"""The sources runner's settings (environment variables, see the README)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from keventing.settings import CommonSettings


class SourcesSettings(CommonSettings):
    http_host: str = Field(default="0.0.0.0", alias="KEVENTING_HTTP_HOST")
    http_port: int = Field(default=8092, alias="KEVENTING_SOURCES_PORT")
    # "wall" follows real time; "manual" stands still until POST /clock moves it (tests, demos).
    clock: Literal["wall", "manual"] = Field(default="wall", alias="KEVENTING_SOURCES_CLOCK")
    # Partitions of the assignment topic: the most runners that can share the sources.
    assignment_partitions: int = Field(default=12, alias="KEVENTING_SOURCES_PARTITIONS")
    # A ContainerSource process that exits is restarted after this delay, doubled at each quick exit.
    restart_backoff_seconds: float = Field(default=1.0, alias="KEVENTING_CONTAINER_RESTART_BACKOFF_SECONDS")
    restart_backoff_max_seconds: float = Field(
        default=60.0, alias="KEVENTING_CONTAINER_RESTART_BACKOFF_MAX_SECONDS"
    )
    # ApiServerSource: the API server to watch (a kubeconfig, or in-cluster when running in a pod).
    kubeconfig: str | None = Field(default=None, alias="KUBECONFIG")
    kube_context: str | None = Field(default=None, alias="KEVENTING_KUBE_CONTEXT")
    # How often an ApiServerSource's permissions and namespaces are checked again.
    apiserver_recheck_seconds: float = Field(default=10.0, alias="KEVENTING_APISERVER_RECHECK_SECONDS")

    @property
    def assignment_topic(self) -> str:
        return f"{self.instance}.source-assignments"

    @property
    def assignment_group(self) -> str:
        return f"{self.instance}.sources"
