"""Reconciliation as a pure function: resources in → topics, contract entries, statuses and children out.

The adapters (local store, Kubernetes) feed it what they read and apply what it returns; nothing here does
I/O, so every rule is unit-tested with plain objects. Each kind has its own module of phases; the order of
``PHASES`` is the order of dependencies (addressables before what refers to them). Every phase has the one
signature ``Phase``: it reads the context and returns its :class:`~controller.context.Contribution`, which
:func:`merge` adds to the context before the next phase runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

from controller import (
    brokers,
    channels,
    conditions,
    eventpolicies,
    eventtypes,
    flows,
    integrations,
    jobsinks,
    requestreply,
    sinks,
    sources,
    transforms,
)
from controller.context import Context, Contribution, ControllerConfig, Desired, Published
from controller.features import with_features
from controller.kafkafeatures import kafka_features
from controller.resolver import ObjectRef
from keventing.binding import K_SINK
from keventing.contract import ContractEntry
from keventing.resources import Resource, ResourceInvalid, ResourceKey, Status
from keventing.resources.messaging import ChannelableStatus
from keventing.sourcereports import SourceReport

__all__ = ["PHASES", "ControllerConfig", "Desired", "Phase", "merge", "reconcile"]

Phase = Callable[[Context], Contribution]

PHASES: list[Phase] = [
    # Sequence and Parallel children, then Channels' backing KafkaChannels, before every other phase.
    flows.expand_flows,
    channels.expand_channels,
    brokers.reconcile_brokers,
    sinks.reconcile_kafka_sinks,
    integrations.reconcile_integration_sinks,
    jobsinks.reconcile_job_sinks,
    channels.reconcile_kafka_channels,
    flows.address_flows,
    channels.reconcile_channels,
    # A transform's sink may be any addressable above; Triggers and Subscriptions may name a transform.
    transforms.reconcile_event_transforms,
    brokers.reconcile_triggers,
    requestreply.reconcile_request_replies,
    channels.reconcile_subscriptions,
    # Flows aggregate the statuses of their channels and subscriptions, so they come after both.
    flows.reconcile_flow_statuses,
    # Sources resolve sinks of any addressable kind, so they come after every addressable.
    sources.bind_container_sources,
    sources.reconcile_sources,
    eventtypes.reconcile_event_types,
    # Every ingress is published by now: the EventPolicies that apply to each.
    eventpolicies.reconcile_event_policies,
]


def reconcile(
    resources: Iterable[Resource],
    config: ControllerConfig,
    topic_errors: Mapping[str, str] | None = None,
    source_reports: Mapping[str, SourceReport] | None = None,
    addressables: Mapping[ObjectRef, str | None] | None = None,
    published: Published | None = None,
    connection_errors: Mapping[str, str] | None = None,
) -> Desired:
    """Compute everything the data plane needs from the resources; ``topic_errors`` are failed creations,
    ``source_reports`` what the source adapters report about the sources they run, ``addressables`` the
    foreign objects destinations refer to (None: the adapter has none), ``published`` the topic ledger and
    the consumer groups given so far (names keep to them), ``connection_errors`` why a resource's own Kafka
    connection failed."""
    valid: dict[ResourceKey, Resource] = {}
    invalid: dict[ResourceKey, Status] = {}
    for resource in resources:
        try:
            resource.validate_identity()
            resource.validate_semantics()
        except ResourceInvalid as err:
            invalid[resource.key] = _invalid_status(resource, str(err))
            continue
        valid[resource.key] = resource
    config = dataclasses.replace(
        with_features(valid, config), kafka_features=kafka_features(valid, config.system_namespace)
    )
    ctx = Context(
        valid,
        config,
        topic_errors or {},
        addressables,
        source_reports=source_reports or {},
        published=published or Published(),
        connection_errors=connection_errors or {},
    )
    for phase in PHASES:
        merge(ctx, phase(ctx))
    ctx.desired.statuses.update(invalid)
    # config-features as applied, on every ingress: the receiver authenticates and authorizes by them.
    stamp = {"oidc": config.oidc, "default_authorization_mode": config.default_authorization_mode}
    for key, entry in ctx.desired.contract.items():
        if entry.ingress is not None:
            ctx.desired.contract[key] = entry.model_copy(
                update={"ingress": entry.ingress.model_copy(update=stamp)}
            )
    for public, internal in (
        (config.ingress_url, config.internal_ingress_url),
        (config.ingress_https_url, config.internal_ingress_https_url),
    ):
        if internal and internal != public:
            ctx.desired.contract = {
                key: internal_urls(entry, public, internal) for key, entry in ctx.desired.contract.items()
            }
    return ctx.desired


def merge(ctx: Context, contribution: Contribution) -> None:
    """Add a phase's contribution to the context: the only place the desired state grows."""
    desired = ctx.desired
    desired.topics.update(contribution.topics)
    desired.contract.update(contribution.contract)
    desired.statuses.update(contribution.statuses)
    desired.children.update(contribution.children)
    desired.connections.update(contribution.connections)
    # Later phases reconcile this pass's children, not their stored copies, and not the forgotten ones.
    ctx.resources.update(contribution.children)
    for key in contribution.forgotten:
        ctx.resources.pop(key, None)
    ctx.addresses.update(contribution.addresses)
    for key, entries in contribution.subscribers.items():
        status = desired.statuses.get(key)
        if isinstance(status, ChannelableStatus):
            status.subscribers.extend(entries)


def internal_urls(entry: ContractEntry, public: str, internal: str) -> ContractEntry:
    """Point the data plane's URLs on keventing's own ingress at ``internal`` instead of ``public``."""

    def url(value: str | None) -> str | None:
        if value is not None and (value == public or value.startswith(public + "/")):
            return internal + value[len(public) :]
        return value

    if entry.egress is not None:
        egress = entry.egress
        return entry.model_copy(
            update={
                "egress": egress.model_copy(
                    update={
                        "destination": url(egress.destination),
                        "reply": egress.reply.model_copy(update={"url": url(egress.reply.url)}),
                        "delivery": egress.delivery.model_copy(
                            update={"dead_letter_url": url(egress.delivery.dead_letter_url)}
                        ),
                    }
                )
            }
        )
    if entry.source is not None:
        source = entry.source
        update: dict[str, object] = {"sink": url(source.sink)}
        if source.container is not None and K_SINK in source.container.env:
            env = {**source.container.env, K_SINK: url(source.container.env[K_SINK]) or ""}
            update["container"] = source.container.model_copy(update={"env": env})
        return entry.model_copy(update={"source": source.model_copy(update=update)})
    return entry


def _invalid_status(resource: Resource, message: str) -> Status:
    """An invalid resource takes no part in reconciliation; its status says what is wrong with it."""
    status = type(resource.status)(observedGeneration=resource.metadata.generation)
    status.conditions = conditions.invalid(message)
    return status
