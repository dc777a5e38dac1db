"""The adapter seam: what an adapter gives :func:`~controller.reconciler.reconcile` and what it takes back.

An adapter is the I/O around the pure reconciler. It gives an :class:`Observed` (the resources it read and
the topic creations that failed) and takes back a :class:`~controller.context.Desired` (topics, contract
entries, statuses, generated children), which :class:`ReconcilePass` hands to it piece by piece in the order
that makes a Ready status mean the data plane has been told: topics, children, contract, statuses, and only
then the deletion of topics nothing wants any more.

:class:`controller.local.LocalController` is the local implementation: resources, statuses and the contract
live on compacted Kafka topics, and :func:`publish_diff` against what it published says what to write and what
to tombstone. A Kubernetes (kopf) adapter implements the same :class:`Adapter`: ``observe`` returns the custom
resources read from the API server; ``write_statuses`` patches each resource's status subresource (keeping
transition times with :func:`controller.conditions.keep_transition_times` against the status it read, and
diffing with :func:`publish_diff` to patch only what changed); ``write_children`` creates or updates the
generated Channels and Subscriptions with their ownerReferences and deletes those no longer wanted;
``publish_contract`` and the topic methods are the same Kafka writes as in local mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from controller.context import ControllerConfig, Desired, Published
from controller.reconciler import reconcile
from controller.resolver import ObjectRef
from keventing.contract import ContractEntry
from keventing.kafka.client import TopicSpec
from keventing.kafka.connection import KafkaConnection
from keventing.resources import Resource, ResourceKey, Status
from keventing.sourcereports import SourceReport

__all__ = ["Adapter", "Desired", "Diff", "Observed", "ReconcilePass", "publish_diff"]

V = TypeVar("V")


@dataclass(frozen=True)
class Observed:
    """What an adapter gives the reconciler: every resource it read, and why topics could not be created."""

    resources: Sequence[Resource]
    # Topic name → why creating it failed (the owning resource's status says so until a creation succeeds).
    topic_errors: Mapping[str, str] = field(default_factory=dict)
    # Contract entry id → what the source adapter running it reports (see keventing.sourcereports).
    source_reports: Mapping[str, SourceReport] = field(default_factory=dict)
    # The objects of foreign kinds (Services, any Addressable) that Destinations refer to and that exist →
    # their URL (None while they have none); None when the adapter has no such objects (local mode).
    addressables: Mapping[ObjectRef, str | None] | None = None
    # The topic ledger and the consumer groups published so far (both from the Kafka data plane).
    published: Published = field(default_factory=Published)
    # Resource id → why its own Kafka connection failed (the Kafka data plane checks them).
    connection_errors: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Diff(Generic[V]):
    """What to write (new or changed values, in the order wanted) and which keys to tombstone (sorted)."""

    write: dict[str, V]
    tombstone: tuple[str, ...]


def publish_diff(published: Mapping[str, V], wanted: Mapping[str, V]) -> Diff[V]:
    """Compare what was published with what is wanted, key by key."""
    return Diff(
        write={key: value for key, value in wanted.items() if published.get(key) != value},
        tombstone=tuple(sorted(set(published) - set(wanted))),
    )


class Adapter(Protocol):
    """The I/O around the reconciler; every method but ``observe`` takes back one part of the Desired."""

    async def observe(self) -> Observed:
        """The resources to reconcile, the topic errors and the addressables, as of now."""
        ...

    async def check_connections(self, connections: Mapping[str, KafkaConnection]) -> bool:
        """Check that each resource's own Kafka connection connects; True when one failed or recovered."""
        ...

    async def create_topics(self, topics: Mapping[str, TopicSpec]) -> bool:
        """Create the missing topics; True when a creation failed or recovered (observe again)."""
        ...

    async def write_children(self, children: Mapping[ResourceKey, Resource]) -> None:
        """Store the generated resources and delete the generated resources no longer among them."""
        ...

    async def publish_contract(self, contract: Mapping[str, ContractEntry]) -> None:
        """Publish the contract entries that changed and tombstone those no longer wanted."""
        ...

    async def write_statuses(self, statuses: Mapping[ResourceKey, Status]) -> None:
        """Write the statuses that changed (keeping transition times) and drop those no longer wanted."""
        ...

    async def delete_topics(self, wanted: Mapping[str, TopicSpec]) -> None:
        """Delete the topics the adapter created that are no longer wanted."""
        ...


# Rounds of topic creation and reconciling in one pass, at most (each round sees newer resources).
_TOPIC_ROUNDS = 5


@dataclass
class ReconcilePass:
    """One reconcile pass through an adapter; ``desired`` is the last state computed, even if applying it
    failed part way (the adapter's metrics report it)."""

    adapter: Adapter
    config: ControllerConfig
    desired: Desired = field(default_factory=Desired)

    def _reconcile(self, observed: Observed) -> Desired:
        self.desired = reconcile(
            observed.resources,
            self.config,
            observed.topic_errors,
            source_reports=observed.source_reports,
            addressables=observed.addressables,
            published=observed.published,
            connection_errors=observed.connection_errors,
        )
        return self.desired

    async def run(self) -> Desired:
        desired = self._reconcile(await self.adapter.observe())
        # Every topic and connection of what is published has been tried (and a failure is in its status).
        for round_ in range(_TOPIC_ROUNDS):
            changed = await self.adapter.check_connections(desired.connections)
            if (
                not (await self.adapter.create_topics(desired.topics) or changed)
                or round_ == _TOPIC_ROUNDS - 1
            ):
                break
            # A topic's creation or a connection failed or recovered: the statuses that depend on it change.
            # The new observation may hold resources that arrived meanwhile: theirs are tried next round.
            desired = self._reconcile(await self.adapter.observe())
        # A child that could not be written (one tenant's: say its namespace is being deleted) does not hold
        # everyone's contract and statuses: its parent's status, made from what was observed, says it is not
        # there. The pass still fails afterwards, so that it is retried.
        try:
            await self.adapter.write_children(desired.children)
        except Exception as err:
            children_failed: Exception | None = err
        else:
            children_failed = None
        await self.adapter.publish_contract(desired.contract)
        await self.adapter.write_statuses(desired.statuses)
        await self.adapter.delete_topics(desired.topics)
        if children_failed is not None:
            raise children_failed
        return desired
