"""The Kafka side of every adapter: topics and the contract, the same in local and Kubernetes mode.

The contract is the one document between the planes, so wherever resources come from, it is published
here, on the compacted ``<instance>.contract`` topic, and only what changed is written.

Which topics keventing created, and for which resource, is recorded on the compacted ``<instance>.topics``
ledger (key = topic, value = the owner's id): only a topic on the ledger is ever deleted, so a KafkaSink that
names an existing topic never deletes it, and the ownership survives a controller restart. A Broker's or a
Channel's topic is named after the resource, so an existing topic of that name is claimed for it.

A Broker whose kafka-broker-config names another cluster, or a KafkaSink with bootstrap servers of its
own, has its topic created (and deleted) on that cluster: the ledger records the connection beside the owner
(the ledger is a reserved control-plane topic, as the contract is), and every admin call goes to the
connection's cluster. A KafkaSource's own connection is checked (``check_connections``) so that a refused
password or an untrusted certificate is the source's not-Ready reason.

Before a new egress is published its consumer group gets committed offsets at the end of its topics (as
Knative's Kafka broker does): a Trigger is Ready only after that, so every event sent once it is Ready
reaches it, however long the dispatcher takes to join the group.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

import orjson
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.admin import DeleteGroupsRequest

from controller.adapter import publish_diff
from controller.context import Published
from controller.contracttopic import ContractTopic
from keventing.contract import ContractEntry, Egress
from keventing.kafka.client import (
    TopicSpec,
    admin_client,
    commit_group_offsets,
    delete_topic,
    ensure_topic,
    make_consumer,
)
from keventing.kafka.compacted import CompactedTopic
from keventing.kafka.connection import KafkaConnection
from keventing.settings import CommonSettings
from keventing.sourcereports import SourceReport, follow_reports
from keventing.topics import is_resource_topic, reserved_reason

log = logging.getLogger("keventing.controller")

# A fresh cluster takes a few seconds to elect group coordinators: retry that long, then go on without.
_POSITION_ATTEMPTS = 20
_POSITION_RETRY_SECONDS = 0.5
# How long a pass waits for the dispatcher to leave a retired consumer group before it can be deleted.
_DELETE_PATIENCE_SECONDS = 20.0
# How long a topic keventing created may take to be described before its new groups are positioned.
_DESCRIBE_PATIENCE_SECONDS = 10.0
_DELETE_RETRY_SECONDS = 0.25
_NON_EMPTY_GROUP = 68
_GROUP_ID_NOT_FOUND = 69
# How long a connection that worked is taken to work without dialling it again.
_CONNECTION_CHECK_SECONDS = 60.0


class KafkaDataPlane:
    """Creates and deletes the topics keventing owns and publishes the contract."""

    def __init__(self, settings: CommonSettings) -> None:
        self.connection = settings.kafka_connection
        # Signed, and repaired whenever something else writes to it (controller.contracttopic).
        self.contract = ContractTopic(
            CompactedTopic(
                settings.kafka_connection,
                settings.contract_topic,
                settings.control_plane_replication_factor,
            ),
            settings.contract_keys(),
        )
        self.instance = settings.instance
        # The topic ledger: topic keventing created (or claimed) → the id of the resource it is for.
        self.topic_owners: dict[str, str] = {}
        # The ledger's topics on a cluster other than keventing's own → that cluster's connection.
        self.topic_connections: dict[str, KafkaConnection] = {}
        # Resource id → why its own connection failed; connection → when it last connected.
        self.connection_errors: dict[str, str] = {}
        self._connected_at: dict[KafkaConnection, float] = {}
        self._ledger = CompactedTopic(
            settings.kafka_connection,
            settings.topic_ledger_topic,
            settings.control_plane_replication_factor,
        )
        # Contract entry id → the consumer group its published egress has (names keep to it).
        self.published_groups: dict[str, str] = {}
        # Consumer groups of deleted egresses (on their cluster: None is keventing's own), deleted once the
        # dispatcher has left them.
        self.retired_groups: set[tuple[KafkaConnection | None, str]] = set()
        # Topic name → why creating it failed; the owning resource's status says so until it succeeds.
        self.topic_errors: dict[str, str] = {}
        # What the sources runners report (kept current from the start); each listener hears of a change.
        self.source_reports: dict[str, SourceReport] = {}
        self.report_listeners: list[Callable[[], None]] = []
        self._reports = CompactedTopic(
            settings.kafka_connection,
            settings.source_reports_topic,
            settings.control_plane_replication_factor,
        )
        self._following: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Learn what an earlier run published, so that a restart writes only what changed since."""
        await self.contract.load()
        self.published_groups = _groups_of(self.published_contract)
        await self._ledger.ensure()
        for topic, value in (await self._ledger.snapshot()).items():
            record = orjson.loads(value)
            self.topic_owners[topic] = record["owner"]
            if record.get("connection"):
                self.topic_connections[topic] = KafkaConnection.model_validate(record["connection"])
        await self._claim_published_topics()
        self._following = [
            asyncio.create_task(follow_reports(self._reports, self.source_reports, self._reports_changed)),
            asyncio.create_task(self.contract.repair()),
        ]

    @property
    def published_contract(self) -> dict[str, bytes]:
        """What is on the contract topic, by key (the controller's own records)."""
        return self.contract.published

    @property
    def published(self) -> Published:
        return Published(self.topic_owners, self.published_groups)

    async def _claim_published_topics(self) -> None:
        """An upgrade from before the ledger: the published Brokers' and Channels' topics are theirs (their
        names are). A KafkaSink's published topic may have existed before it, so it is not claimed: it stays."""
        for key, value in sorted(self.published_contract.items()):
            ingress = ContractEntry.decode(value).ingress
            if ingress is None or not is_resource_topic(ingress.topic) or ingress.topic in self.topic_owners:
                continue
            await self._record_owner(ingress.topic, key)

    async def _record_owner(self, topic: str, owner: str, connection: KafkaConnection | None = None) -> None:
        record: dict[str, object] = {"owner": owner}
        if connection is not None:
            record["connection"] = connection.model_dump(mode="json", exclude_none=True)
            self.topic_connections[topic] = connection
        else:
            self.topic_connections.pop(topic, None)
        await self._ledger.put(topic, orjson.dumps(record))
        self.topic_owners[topic] = owner

    def _reports_changed(self) -> None:
        for listener in self.report_listeners:
            listener()

    async def stop(self) -> None:
        for task in self._following:
            task.cancel()
        await asyncio.gather(*self._following, return_exceptions=True)
        await self.contract.table.stop()
        await self._ledger.stop()

    async def check_connections(self, connections: Mapping[str, KafkaConnection]) -> bool:
        """Dial each resource's own cluster (once per connection, and a working one only every
        ``_CONNECTION_CHECK_SECONDS``); True when a connection failed or recovered (reconcile again)."""
        now = asyncio.get_running_loop().time()
        errors: dict[KafkaConnection, str | None] = {}

        async def check(connection: KafkaConnection) -> None:
            checked = self._connected_at.get(connection)
            if checked is not None and now - checked < _CONNECTION_CHECK_SECONDS:
                errors[connection] = None
                return
            try:
                async with admin_client(connection) as admin:
                    await admin.describe_cluster()
                errors[connection] = None
                self._connected_at[connection] = now
            except Exception as err:
                errors[connection] = str(err)
                self._connected_at.pop(connection, None)

        # Side by side: an unreachable cluster costs a pass one timeout, not one per cluster.
        await asyncio.gather(*(check(connection) for connection in set(connections.values())))
        wanted = {key: error for key, connection in connections.items() if (error := errors[connection])}
        changed = wanted != self.connection_errors
        self.connection_errors = wanted
        return changed

    async def create_topics(self, topics: Mapping[str, TopicSpec]) -> bool:
        """Create the missing topics, each on its cluster, and record them on the ledger; True when a creation
        failed or recovered, or the ledger changed (reconcile again: statuses say who owns a topic)."""
        changed = False
        by_connection: dict[KafkaConnection | None, dict[str, TopicSpec]] = {}
        for name, spec in topics.items():
            if spec.create:
                by_connection.setdefault(spec.connection, {})[name] = spec
        for connection, specs in by_connection.items():
            if connection is None:
                async with admin_client(self.connection) as admin:
                    changed |= await self._create_on(admin, specs)
                continue
            try:
                async with admin_client(connection) as admin:
                    changed |= await self._create_on(admin, specs)
            except KafkaError as err:  # another cluster unreachable: its resources say why, the rest go on
                for name in specs:
                    error = f"creating topic {name} failed: {err}"
                    changed |= self.topic_errors.get(name) != error
                    self.topic_errors[name] = error
        return changed

    async def _create_on(self, admin: AIOKafkaAdminClient, topics: Mapping[str, TopicSpec]) -> bool:
        changed = False
        existing = set(await admin.list_topics())
        for name, spec in topics.items():
            reserved = reserved_reason(name, self.instance)
            if reserved is not None:  # the reconciler never asks for one; never create one anyway
                self.topic_errors[name] = reserved
                continue
            if name in existing:
                if spec.claim_existing and spec.owner and self.topic_owners.get(name) != spec.owner:
                    await self._record_owner(name, spec.owner, spec.connection)
                    changed = True
                changed |= self.topic_errors.pop(name, None) is not None
                continue
            try:
                created = await ensure_topic(admin, spec)
                if created:
                    log.info("created topic", extra={"topic": name, "partitions": spec.partitions})
                if created or spec.claim_existing:
                    if spec.owner and self.topic_owners.get(name) != spec.owner:
                        await self._record_owner(name, spec.owner, spec.connection)
                        changed = True
                changed |= self.topic_errors.pop(name, None) is not None
            except Exception as err:  # the broker's status says why; the next pass retries
                self.topic_errors[name] = f"creating topic {name} failed: {err}"
                changed = True
        return changed

    async def delete_topics(self, wanted: Mapping[str, TopicSpec]) -> None:
        """Delete the topics on the ledger that nothing wants any more (never one keventing did not create),
        each on the cluster the ledger says it is on."""
        unwanted = set(self.topic_owners) - set(wanted)
        by_connection: dict[KafkaConnection | None, list[str]] = {}
        for name in sorted(unwanted):
            by_connection.setdefault(self.topic_connections.get(name), []).append(name)
        for connection, names in by_connection.items():
            try:
                async with admin_client(connection or self.connection) as admin:
                    for name in names:
                        if reserved_reason(name, self.instance) is None:
                            await delete_topic(admin, name)
                            log.info("deleted topic", extra={"topic": name})
                        await self._ledger.put(name, None)
                        self.topic_owners.pop(name, None)
                        self.topic_connections.pop(name, None)
            except KafkaError as err:
                if connection is None:
                    raise
                # Kept on the ledger: the next pass tries again.
                log.warning(
                    "cannot delete topics on another cluster", extra={"topics": names, "error": str(err)}
                )

    async def publish_contract(self, contract: Mapping[str, ContractEntry]) -> None:
        wanted = {key: entry.encode() for key, entry in contract.items()}
        # Only an entry that changed can bring a new consumer group: decode what it replaces, nothing else.
        new_egresses = []
        for key, value in wanted.items():
            egress = contract[key].egress
            previous = self.published_contract.get(key)
            if egress is None or previous == value:
                continue
            before = ContractEntry.decode(previous).egress if previous is not None else None
            if before is None or before.consumer_group != egress.consumer_group:
                new_egresses.append(egress)
        await self.init_offsets(new_egresses)
        retiring = self._retiring_groups(contract, wanted)
        await self.contract.publish(wanted)
        # What was just published, read off the entries rather than decoded back from their bytes.
        self.published_groups = {
            key: entry.egress.consumer_group for key, entry in contract.items() if entry.egress is not None
        }
        self.retired_groups |= retiring
        if self.retired_groups:
            await self.delete_groups()

    def _retiring_groups(
        self, contract: Mapping[str, ContractEntry], encoded: Mapping[str, bytes]
    ) -> set[tuple[KafkaConnection | None, str]]:
        """The consumer groups of published egresses that ``contract`` drops (a deleted Trigger or
        Subscription), on their cluster, unless another egress still uses the group. A KafkaSource's
        groups are the user's, and stay."""
        kept = {entry.egress.consumer_group for entry in contract.values() if entry.egress is not None}
        retiring = set()
        for key, value in self.published_contract.items():
            if encoded.get(key) == value:
                continue
            before = ContractEntry.decode(value).egress
            if before is None or before.kind == "KafkaSource":
                continue
            if before.consumer_group not in kept:
                retiring.add((before.connection, before.consumer_group))
        return retiring

    async def delete_groups(self, patience: float = _DELETE_PATIENCE_SECONDS) -> None:
        """Delete retired consumer groups, as Knative deletes a deleted Trigger's. A group is deletable once
        the dispatcher has left it (it follows the contract just published): wait up to ``patience``
        seconds in this pass; a group still not empty is retried in the next one."""
        deadline = asyncio.get_running_loop().time() + patience
        for connection in {c for c, _ in self.retired_groups}:
            try:
                async with admin_client(connection or self.connection) as admin:
                    await self._delete_groups_on(admin, connection, deadline)
            except KafkaError as err:
                if connection is None:
                    raise
                log.warning("cannot delete consumer groups on another cluster", extra={"error": str(err)})

    async def _delete_groups_on(
        self, admin: AIOKafkaAdminClient, connection: KafkaConnection | None, deadline: float
    ) -> None:
        while True:
            retired = sorted(g for c, g in self.retired_groups if c == connection)
            for group in retired:
                try:
                    done = await _delete_group(admin, group)
                except KafkaError as err:
                    log.warning(
                        "deleting a consumer group failed", extra={"group": group, "error": repr(err)}
                    )
                    done = False
                if done:
                    self.retired_groups.discard((connection, group))
                    log.info("deleted consumer group", extra={"group": group})
            if not any(c == connection for c, _ in self.retired_groups):
                return
            if asyncio.get_running_loop().time() >= deadline:
                return
            await asyncio.sleep(_DELETE_RETRY_SECONDS)

    async def init_offsets(self, egresses: Iterable[Egress]) -> None:
        """Commit the end of each new egress's topics for its group, unless the group has offsets already:
        Ready then means that every later event arrives, before any dispatcher joined. A KafkaSource's group
        too, as Knative's controller initializes a new source's offsets (a source scaled to zero delivers,
        once scaled up, what was written since it was created)."""
        by_connection: dict[KafkaConnection | None, list[Egress]] = {}
        for egress in egresses:
            if egress.initial_offset == "latest":
                by_connection.setdefault(egress.connection, []).append(egress)
        for connection, todo in by_connection.items():
            if connection is None:  # keventing's own cluster: when it is down, so is everything else
                await self._init_offsets_on(None, todo)
                continue
            try:
                await self._init_offsets_on(connection, todo)
            except (KafkaError, OSError, TimeoutError) as err:
                # Another cluster (a KafkaSource's, a Broker's kafka-broker-config's) unreachable must not hold
                # up the contract of every other resource: its groups are positioned when a dispatcher joins.
                log.warning(
                    "could not position new consumer groups on their cluster; each is positioned when a "
                    "dispatcher joins it",
                    extra={
                        "kafka": connection.describe(),
                        "groups": [egress.consumer_group for egress in todo],
                        "error": repr(err),
                    },
                )

    async def _init_offsets_on(self, connection: KafkaConnection | None, todo: list[Egress]) -> None:
        async with admin_client(connection or self.connection) as admin:
            ends = await self._end_offsets(
                admin, connection, {topic for egress in todo for topic in egress.topics}
            )
            semaphore = asyncio.Semaphore(16)

            async def one(egress: Egress) -> None:
                offsets = {tp: offset for tp, offset in ends.items() if tp.topic in egress.topics}
                if not offsets:
                    return  # the topic does not exist (yet): the dispatcher positions the group itself
                async with semaphore:
                    error: Exception | None = None
                    for _ in range(_POSITION_ATTEMPTS):
                        try:
                            await _commit_if_new(admin, egress.consumer_group, offsets)
                            return
                        except KafkaError as err:  # a fresh cluster is still electing group coordinators
                            error = err
                            await asyncio.sleep(_POSITION_RETRY_SECONDS)
                    log.warning(
                        "could not position a new consumer group; the dispatcher positions it when it joins",
                        extra={"group": egress.consumer_group, "error": repr(error)},
                    )

            await asyncio.gather(*(one(egress) for egress in todo))

    async def _end_offsets(
        self, admin: AIOKafkaAdminClient, connection: KafkaConnection | None, topics: set[str]
    ) -> dict[TopicPartition, int]:
        """The end offsets of ``topics``' partitions. A topic this pass just created may not be described yet
        (no leader elected, or not in the metadata of the broker asked): it is asked again for a while, since
        a group left unpositioned would start where its topic ends when the dispatcher joins, missing the
        events sent after its resource said Ready."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _DESCRIBE_PATIENCE_SECONDS
        while True:
            partitions: list[TopicPartition] = []
            for d in await admin.describe_topics(sorted(topics)):
                found = d.get("partitions") or []
                if not d.get("error_code") and found and all(p.get("leader", -1) >= 0 for p in found):
                    partitions.extend(TopicPartition(d["topic"], p["partition"]) for p in found)
            # Only keventing's own topics are waited for: a KafkaSource's topic may well not exist.
            missing = (topics - {tp.topic for tp in partitions}) & set(self.topic_owners)
            if not missing or loop.time() >= deadline:
                break
            await asyncio.sleep(0.1)
        if missing:
            log.warning(
                "topics not ready to describe; the dispatcher positions their new groups",
                extra={"topics": sorted(missing)},
            )
        if not partitions:
            return {}
        consumer = make_consumer(connection or self.connection, None)
        await consumer.start()
        try:
            return dict(await consumer.end_offsets(partitions))
        finally:
            await consumer.stop()


async def _commit_if_new(
    admin: AIOKafkaAdminClient, group: str, offsets: Mapping[TopicPartition, int]
) -> None:
    """Commit ``offsets`` for ``group`` unless it has committed offsets already (a restarted controller's)."""
    coordinator = await admin.find_coordinator(group)
    if await admin.list_consumer_group_offsets(group, coordinator):
        return
    await commit_group_offsets(admin, group, offsets, coordinator)


async def _delete_group(admin: AIOKafkaAdminClient, group: str) -> bool:
    """Send DeleteGroups for ``group`` to its coordinator (aiokafka's admin client has no such call); True
    when it is gone, False while it still has members."""
    coordinator = await admin.find_coordinator(group)
    response = await admin._send_request(DeleteGroupsRequest([group]), coordinator)
    for _group, error_code in response.results:
        if error_code == _NON_EMPTY_GROUP:
            return False
        if error_code not in (0, _GROUP_ID_NOT_FOUND):
            raise for_code(error_code)(f"deleting consumer group {group} failed")
    return True


async def publish(topic: CompactedTopic, published: dict[str, bytes], wanted: Mapping[str, bytes]) -> None:
    """Write what changed on a compacted topic and tombstone what is gone, keeping ``published`` in step
    with every write (a failed pass leaves it true to what is on the topic)."""
    diff = publish_diff(published, wanted)
    for key, value in diff.write.items():
        await topic.put(key, value)
        published[key] = value
    for key in diff.tombstone:
        await topic.put(key, None)
        del published[key]


def _groups_of(published: Mapping[str, bytes]) -> dict[str, str]:
    groups = {}
    for key, value in published.items():
        egress = ContractEntry.decode(value).egress
        if egress is not None:
            groups[key] = egress.consumer_group
    return groups


class DataPlaneAdapter:
    """The parts of :class:`controller.adapter.Adapter` that every adapter hands to its Kafka data plane."""

    data_plane: KafkaDataPlane

    async def check_connections(self, connections: Mapping[str, KafkaConnection]) -> bool:
        return await self.data_plane.check_connections(connections)

    async def create_topics(self, topics: Mapping[str, TopicSpec]) -> bool:
        return await self.data_plane.create_topics(topics)

    async def delete_topics(self, wanted: Mapping[str, TopicSpec]) -> None:
        await self.data_plane.delete_topics(wanted)

    async def publish_contract(self, contract: Mapping[str, ContractEntry]) -> None:
        await self.data_plane.publish_contract(contract)
