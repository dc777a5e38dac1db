"""eventing.knative.dev/v1alpha1 KafkaSink: an addressable that writes the CloudEvents it receives to a topic."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from keventing.resources.base import Model, Resource, ResourceInvalid

CONTENT_MODES = ("binary", "structured")


class KafkaSinkSpec(Model):
    topic: str
    numPartitions: int | None = None
    replicationFactor: int | None = None
    # Knative requires the cluster's address; keventing writes to its own cluster (see the README).
    bootstrapServers: list[str] | str | None = None
    contentMode: Literal["binary", "structured", ""] | None = None
    auth: dict[str, Any] | None = None


class KafkaSink(Resource):
    API_VERSIONS = ("eventing.knative.dev/v1alpha1",)
    KIND = "KafkaSink"
    PLURAL = "kafkasinks"
    ADDRESSABLE = True

    spec: KafkaSinkSpec = Field(default_factory=lambda: KafkaSinkSpec(topic=""))

    @property
    def content_mode(self) -> Literal["binary", "structured"]:
        # Knative's default is structured.
        return "binary" if self.spec.contentMode == "binary" else "structured"

    @property
    def owns_topic(self) -> bool:
        """Knative creates (and deletes) the topic only when both its partitions and replication are given."""
        return self.spec.numPartitions is not None and self.spec.replicationFactor is not None

    def validate_semantics(self) -> None:
        spec = self.spec
        if not spec.topic:
            raise ResourceInvalid("spec.topic", "invalid value: must name a topic")
        if spec.numPartitions is not None and spec.numPartitions <= 0:
            raise ResourceInvalid("spec.numPartitions", f"must be > 0, got {spec.numPartitions}")
        if spec.replicationFactor is not None and spec.replicationFactor <= 0:
            raise ResourceInvalid("spec.replicationFactor", f"must be > 0, got {spec.replicationFactor}")


KINDS: tuple[type[Resource], ...] = (KafkaSink,)
