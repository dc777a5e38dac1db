"""Sources: PingSource, IntegrationSource (timer), ApiServerSource, ContainerSource, SinkBinding and KafkaSource.

Each source's sink is resolved to a URL (``status.sinkUri``). PingSources, IntegrationSources, ApiServerSources
and ContainerSources become ``Source`` entries in the contract for the sources runner (an ApiServerSource's
permissions and watches are checked by the runner, whose report becomes its conditions); a KafkaSource becomes an ``Egress`` for the
dispatcher (the same delivery machinery as a Trigger); a SinkBinding only resolves, because what it binds
is started by ``kev run --binding`` (or, on Kubernetes, bound by the operator's webhook). On Kubernetes a
ContainerSource is not run by the sources runner: it generates a SinkBinding for its Deployment, which the
operator applies (see :mod:`controller.kubernetes.binder`).
"""

from __future__ import annotations

import base64

from controller.children import adopt, prune
from controller.conditions import Conditions
from controller.connections import ConnectionUnresolvable, kafka_source_connection
from controller.context import Context, Contribution, delivery_policy, identity
from controller.identities import CONDITION as OIDC_CONDITION
from controller.identities import oidc_identity
from controller.resolver import Resolver, Unresolvable
from controller.topicpolicy import TopicRefused, first_refusal, refuse_group
from keventing.binding import binding_env, expand
from keventing.contract import (
    ApiServerWatch,
    ContainerProcess,
    ContractEntry,
    DeliveryPolicy,
    Egress,
    PingSchedule,
    Reply,
    ServiceAccount,
    Source,
    TimerSchedule,
    WatchedResource,
)
from keventing.kafka.connection import KafkaConnection
from keventing.resources import (
    ApiServerSource,
    ContainerSource,
    KafkaSource,
    PingSource,
    ResourceKey,
    SinkBinding,
)
from keventing.resources.base import ObjectMeta
from keventing.resources.integrations import (
    DEFAULT_CONTENT_TYPE,
    TIMER_EVENT_SOURCE,
    TIMER_EVENT_TYPE,
    IntegrationSource,
)
from keventing.resources.sources import (
    APISERVER_EVENT_TYPES,
    CONTAINER_SOURCE_BINDING_SUFFIX,
    CONTAINER_SOURCE_DEPLOYMENT_SUFFIX,
    KAFKA_EVENT_TYPE,
    KAFKA_KEY_TYPES,
    PING_EVENT_TYPE,
    ApiServerSourceStatus,
    BindingSubject,
    CloudEventAttributes,
    KafkaSourceStatus,
    SinkBindingSpec,
    SourceResource,
    SourceStatus,
    kafka_event_source,
    ping_event_source,
)
from keventing.sourcereports import SourceReport

# Knative's KafkaSource egress defaults: 10 retries, exponential backoff from 10 s.
KAFKA_SOURCE_DELIVERY = DeliveryPolicy(retry=10, backoff_policy="exponential", backoff_delay=10.0)


def bind_container_sources(ctx: Context) -> Contribution:
    """On Kubernetes, each ContainerSource's SinkBinding (its Deployment, by name, to its sink), as Knative's."""
    out = Contribution()
    if not ctx.config.kubernetes:
        return out
    for container in ctx.of(ContainerSource):
        adopt(ctx, out, container, [container_source_binding(container)])
    prune(ctx, out, [ContainerSource.KIND])
    return out


def container_source_binding(container: ContainerSource) -> SinkBinding:
    return SinkBinding(
        apiVersion=SinkBinding.API_VERSIONS[0],
        kind=SinkBinding.KIND,
        metadata=ObjectMeta(
            name=container.name + CONTAINER_SOURCE_BINDING_SUFFIX, namespace=container.namespace
        ),
        spec=SinkBindingSpec(
            subject=BindingSubject(
                apiVersion="apps/v1",
                kind="Deployment",
                name=container.name + CONTAINER_SOURCE_DEPLOYMENT_SUFFIX,
            ),
            sink=container.spec.sink.model_copy(deep=True),
            ceOverrides=container.spec.ceOverrides.model_copy(deep=True)
            if container.spec.ceOverrides
            else None,
        ),
    )


def reconcile_sources(ctx: Context) -> Contribution:
    out = Contribution()
    resolver = ctx.resolver
    for ping in ctx.of(PingSource):
        status, source = reconcile_ping_source(ping, resolver)
        _publish(out, ping, status, ContractEntry(source=source) if source else None)
    for integration in ctx.of(IntegrationSource):
        status, source = reconcile_integration_source(integration, resolver)
        _publish(out, integration, status, ContractEntry(source=source) if source else None)
    for apiserver in ctx.of(ApiServerSource):
        api_status, api_source = reconcile_apiserver_source(
            apiserver, resolver, ctx.source_reports.get(str(apiserver.key))
        )
        _publish(out, apiserver, api_status, ContractEntry(source=api_source) if api_source else None)
    for container in ctx.of(ContainerSource):
        if ctx.config.kubernetes:
            _publish(out, container, reconcile_container_deployment(container, resolver), None)
            continue
        status, source = reconcile_container_source(container, resolver)
        _publish(out, container, status, ContractEntry(source=source) if source else None)
    for binding in ctx.of(SinkBinding):
        _publish(out, binding, reconcile_sink_binding(binding, resolver), None)
    _sink_trust(out, resolver)
    _runner_identities(out, ctx)
    for kafka in ctx.of(KafkaSource):
        refused = first_refusal(ctx, kafka.namespace, [t for t in kafka.spec.topics if t]) or refuse_group(
            ctx, kafka.namespace, kafka.consumer_group
        )
        connection = None
        try:
            connection = kafka_source_connection(kafka, ctx.resources, ctx.config.kafka_bootstrap_servers)
        except ConnectionUnresolvable as err:
            refused = refused or TopicRefused(err.reason, str(err))
        if connection is not None and refused is None:
            out.connections[str(kafka.key)] = connection
            failed = ctx.connection_errors.get(str(kafka.key))
            refused = TopicRefused("KafkaConnectionFailed", failed) if failed else None
        kafka_status, egress = reconcile_kafka_source(kafka, resolver, refused, connection)
        if egress is not None:
            ca_certs, audience = resolver.trust(kafka.sink, kafka.namespace)
            egress = egress.model_copy(
                update={"destination_ca_certs": ca_certs, "destination_audience": audience}
            )
            kafka_status.sinkCACerts, kafka_status.sinkAudience = ca_certs, audience
        account = _with_identity(kafka, kafka_status, ctx)
        if egress is not None:
            egress = egress.model_copy(update={"identity": account})
        _publish(out, kafka, kafka_status, ContractEntry(egress=egress) if egress else None)
    return out


def _sink_trust(out: Contribution, resolver: Resolver) -> None:
    """Every source entry gets its sink's CACerts and audience, and so does its status (Knative's
    sinkCACerts and sinkAudience)."""
    for key, entry in out.contract.items():
        resource = resolver.resources.get(ResourceKey.parse(key))
        if entry.source is None or not isinstance(resource, SourceResource):
            continue
        ca_certs, audience = resolver.trust(resource.sink, resource.namespace)
        out.contract[key] = entry.model_copy(
            update={
                "source": entry.source.model_copy(
                    update={"sink_ca_certs": ca_certs, "sink_audience": audience}
                )
            }
        )
        status = out.statuses.get(resource.key)
        if isinstance(status, SourceStatus):
            status.sinkCACerts, status.sinkAudience = ca_certs, audience


def _runner_identities(out: Contribution, ctx: Context) -> None:
    """The sources the sources runner sends for get their OIDC identity (Kubernetes mode): in their status
    and in their contract entry, whose events then carry that account's token."""
    for kind in (PingSource, IntegrationSource, ApiServerSource):
        for source in ctx.of(kind):
            status = out.statuses.get(source.key)
            if not isinstance(status, SourceStatus):
                continue
            account = _with_identity(source, status, ctx)
            entry = out.contract.get(str(source.key))
            if entry is not None and entry.source is not None and account is not None:
                out.contract[str(source.key)] = entry.model_copy(
                    update={"source": entry.source.model_copy(update={"identity": account})}
                )


def _with_identity(source: SourceResource, status: SourceStatus, ctx: Context) -> ServiceAccount | None:
    """Add OIDCIdentityCreated and ``status.auth`` to a finished status (the condition is True whenever it is
    set here, so Ready stands); the identity, if the source has one."""
    conditions = Conditions()
    oidc = oidc_identity(source, ctx.config, conditions)
    if oidc is None:
        return None
    status.auth = oidc.auth
    status.conditions = [*status.conditions, *conditions.finish([OIDC_CONDITION])[1:]]
    return oidc.account


def _publish(
    out: Contribution, source: SourceResource, status: SourceStatus, entry: ContractEntry | None
) -> None:
    out.statuses[source.key] = status
    if entry is not None:
        out.contract[str(source.key)] = entry


def _resolve_sink(
    source: SourceResource, resolver: Resolver, conditions: Conditions, condition: str
) -> str | None:
    try:
        uri = resolver.resolve(source.sink, source.namespace)
    except Unresolvable as err:
        conditions.false(condition, "NotFound", f"Sink not found: {err}")
        return None
    conditions.true(condition)
    return uri


# ---------------------------------------------------------------------------------------- PingSource


def reconcile_ping_source(ping: PingSource, resolver: Resolver) -> tuple[SourceStatus, Source | None]:
    conditions = Conditions()
    status = SourceStatus(observedGeneration=ping.metadata.generation)
    status.ceAttributes = [
        CloudEventAttributes(type=PING_EVENT_TYPE, source=ping_event_source(ping.namespace, ping.name))
    ]
    sink = _resolve_sink(ping, resolver, conditions, "SinkProvided")
    source = None
    if sink is not None:
        status.sinkUri = sink
        conditions.true("Deployed", message="scheduled by the sources runner")
        source = ping_source_entry(ping, sink)
    status.conditions = conditions.finish(["SinkProvided", "Deployed"])
    return status, source


def ping_source_entry(ping: PingSource, sink: str) -> Source:
    payload = ping.payload
    return Source(
        **identity(ping),
        sink=sink,
        ce_overrides=ping.ce_overrides,
        ping=PingSchedule(
            schedule=ping.schedule,
            timezone=ping.spec.timezone or None,
            content_type=ping.spec.contentType or None,
            data_base64=base64.b64encode(payload).decode() if payload is not None else None,
        ),
    )


# ---------------------------------------------------------------------------------- IntegrationSource


def reconcile_integration_source(
    source: IntegrationSource, resolver: Resolver
) -> tuple[SourceStatus, Source | None]:
    """A timer IntegrationSource: run by the sources runner, like a PingSource."""
    conditions = Conditions()
    status = SourceStatus(observedGeneration=source.metadata.generation)
    status.ceAttributes = [CloudEventAttributes(type=TIMER_EVENT_TYPE, source=TIMER_EVENT_SOURCE)]
    sink = _resolve_sink(source, resolver, conditions, "SinkProvided")
    entry = None
    timer = source.spec.timer
    if sink is not None and timer is not None:
        status.sinkUri = sink
        conditions.true("Deployed", message="the timer is run by the sources runner")
        entry = Source(
            **identity(source),
            sink=sink,
            ce_overrides=source.ce_overrides,
            timer=TimerSchedule(
                period_ms=timer.period,
                message=timer.message,
                content_type=timer.contentType or DEFAULT_CONTENT_TYPE,
                repeat_count=timer.repeatCount,
            ),
        )
    status.conditions = conditions.finish(["SinkProvided", "Deployed"])
    return status, entry


# ----------------------------------------------------------------------------------- ApiServerSource

APISERVER_CONDITIONS = ["SinkProvided", "SufficientPermissions", "Deployed"]


def reconcile_apiserver_source(
    source: ApiServerSource, resolver: Resolver, report: SourceReport | None
) -> tuple[ApiServerSourceStatus, Source | None]:
    """The sink is resolved here; permissions and watches are the sources runner's to check, and its report
    counts only once it is about this generation of the spec."""
    conditions = Conditions()
    status = ApiServerSourceStatus(observedGeneration=source.metadata.generation)
    sink = _resolve_sink(source, resolver, conditions, "SinkProvided")
    status.sinkUri = sink
    current = report if report is not None and report.generation == source.metadata.generation else None
    if current is None:
        waiting = "waiting for the sources runner to check the service account's permissions and watch"
        conditions.unknown("SufficientPermissions", "Pending", waiting)
        conditions.unknown("Deployed", "Pending", waiting)
    else:
        for type_ in ("SufficientPermissions", "Deployed"):
            reported = current.condition(type_)
            if reported is None:
                conditions.unknown(type_, "Pending", "the sources runner has not reported it yet")
            elif reported.status == "True":
                conditions.true(type_, reported.reason, reported.message)
            elif reported.status == "False":
                conditions.false(type_, reported.reason or "Failed", reported.message or "")
            else:
                conditions.unknown(type_, reported.reason or "Pending", reported.message or "")
        status.namespaces = list(current.namespaces) or None
        if current.event_source:
            status.ceAttributes = [
                CloudEventAttributes(type=t, source=current.event_source)
                for t in APISERVER_EVENT_TYPES[source.mode]
            ]
    status.conditions = conditions.finish(APISERVER_CONDITIONS)
    if sink is None:
        return status, None
    return status, apiserver_source_entry(source, sink)


def apiserver_source_entry(source: ApiServerSource, sink: str) -> Source:
    spec = source.spec
    selector = spec.namespaceSelector
    return Source(
        **identity(source),
        sink=sink,
        ce_overrides=source.ce_overrides,
        apiserver=ApiServerWatch(
            resources=tuple(
                WatchedResource(
                    api_version=r.apiVersion,
                    kind=r.kind,
                    label_selector=r.selector.to_query() if r.selector else "",
                )
                for r in spec.resources
            ),
            mode="Resource" if source.mode == "Resource" else "Reference",
            service_account=source.service_account,
            namespace_selector=selector.to_query() if selector is not None else None,
            owner_api_version=spec.owner.apiVersion if spec.owner else None,
            owner_kind=spec.owner.kind if spec.owner else None,
            filters=spec.filters or None,
            generation=source.metadata.generation,
        ),
    )


# ----------------------------------------------------------------------------------- ContainerSource


def reconcile_container_source(
    container: ContainerSource, resolver: Resolver
) -> tuple[SourceStatus, Source | None]:
    conditions = Conditions()
    status = SourceStatus(observedGeneration=container.metadata.generation)
    sink = _resolve_sink(container, resolver, conditions, "SinkBindingReady")
    process: ContainerProcess | None = None
    try:
        process = container_process(container, sink or "")
        conditions.true("ReceiveAdapterReady", message="run by the sources runner")
    except ValueError as err:
        conditions.false("ReceiveAdapterReady", "NotRunnableLocally", str(err))
    source = None
    if sink is not None:
        status.sinkUri = sink
        if process is not None:
            source = Source(
                **identity(container),
                sink=sink,
                ce_overrides=container.ce_overrides,
                container=process,
            )
    status.conditions = conditions.finish(["SinkBindingReady", "ReceiveAdapterReady"])
    return status, source


def reconcile_container_deployment(container: ContainerSource, resolver: Resolver) -> SourceStatus:
    """A ContainerSource on Kubernetes: its Deployment is generated (by the operator) and bound to the sink."""
    conditions = Conditions()
    status = SourceStatus(observedGeneration=container.metadata.generation)
    status.sinkUri = _resolve_sink(container, resolver, conditions, "SinkBindingReady")
    deployment = container.name + CONTAINER_SOURCE_DEPLOYMENT_SUFFIX
    # The test cluster has no kubelet: Ready says the Deployment is generated and bound, not that it runs.
    conditions.true("ReceiveAdapterReady", message=f"Deployment {deployment} generated")
    status.conditions = conditions.finish(["SinkBindingReady", "ReceiveAdapterReady"])
    return status


def container_process(container: ContainerSource, sink: str) -> ContainerProcess:
    """The first container as a local process, with the SinkBinding's variables; ValueError if it cannot run."""
    spec = container.container
    if not spec.command:
        raise ValueError(
            f"container {spec.name!r} has no command: locally keventing runs command and args as a "
            "process (it does not run images)"
        )
    env: dict[str, str] = {}
    for var in spec.env:
        if var.valueFrom is not None:
            raise ValueError(f"env {var.name}: valueFrom is not supported locally; set value")
        env[var.name] = expand(var.value or "", env)
    env.update(binding_env(sink, container.ce_overrides))  # SinkBinding's variables win, as on Kubernetes
    argv = tuple(expand(arg, env) for arg in [*spec.command, *(spec.args or [])])
    return ContainerProcess(argv=argv, env=env, working_dir=spec.workingDir)


# --------------------------------------------------------------------------------------- SinkBinding


def reconcile_sink_binding(binding: SinkBinding, resolver: Resolver) -> SourceStatus:
    conditions = Conditions()
    status = SourceStatus(observedGeneration=binding.metadata.generation)
    status.sinkUri = _resolve_sink(binding, resolver, conditions, "SinkProvided")
    status.conditions = conditions.finish(["SinkProvided"])
    return status


# --------------------------------------------------------------------------------------- KafkaSource


def reconcile_kafka_source(
    kafka: KafkaSource,
    resolver: Resolver,
    refused: TopicRefused | None = None,
    connection: KafkaConnection | None = None,
) -> tuple[KafkaSourceStatus, Egress | None]:
    """``refused``: why one of its topics may not be read (:mod:`controller.topicpolicy`), or why its
    cluster cannot be (:mod:`controller.connections`); nothing is. ``connection``: its cluster (None: the
    services' own)."""
    conditions = Conditions()
    status = KafkaSourceStatus(observedGeneration=kafka.metadata.generation)
    status.ceAttributes = [
        CloudEventAttributes(type=KAFKA_EVENT_TYPE, source=kafka_event_source(kafka.namespace, kafka.name, t))
        for t in kafka.spec.topics
    ]
    order = ["SinkProvided", "Deployed"]
    key_type = kafka.key_type
    if key_type is not None:
        order.append("KeyTypeCorrect")
        if key_type in KAFKA_KEY_TYPES:
            conditions.true("KeyTypeCorrect")
        else:
            conditions.false(
                "KeyTypeCorrect",
                "KeyTypeNotSupported",
                f"key type {key_type!r} is not one of {', '.join(KAFKA_KEY_TYPES)}",
            )
    sink = _resolve_sink(kafka, resolver, conditions, "SinkProvided")
    status.sinkUri = sink
    delivery: DeliveryPolicy | None = None
    try:
        delivery = delivery_policy(kafka.spec.delivery, KAFKA_SOURCE_DELIVERY, resolver, kafka.namespace)
    except Unresolvable as err:
        conditions.false("Deployed", "DeadLetterSinkUnresolvable", str(err))
    if refused is not None:
        conditions.false("Deployed", refused.reason, refused.message)
    elif sink is not None and delivery is not None:
        deployed = f"consumer group {kafka.consumer_group}; {kafka.consumers} consumer(s)"
        conditions.true("Deployed", message=deployed)
    status.conditions = conditions.finish(order)
    if not status.ready or sink is None or delivery is None:
        return status, None
    # The dispatchers run exactly these between them (dispatcher/manager.py), as Knative's scheduler places
    # its virtual replicas.
    status.consumers = kafka.consumers
    return status, kafka_source_egress(kafka, sink, delivery, connection)


def kafka_source_egress(
    kafka: KafkaSource, sink: str, delivery: DeliveryPolicy, connection: KafkaConnection | None = None
) -> Egress:
    key_type = kafka.key_type
    return Egress(
        **identity(kafka),
        topics=tuple(t for t in kafka.spec.topics if t),
        consumer_group=kafka.consumer_group,
        destination=sink,
        # Knative's KafkaSource discards replies, so it does not ask for one.
        prefer_reply=False,
        reply=Reply(strategy="discard"),
        delivery=delivery,
        delivery_order=kafka.delivery_order,
        initial_offset=kafka.initial_offset,
        connection=connection,
        key_type=key_type if key_type in KAFKA_KEY_TYPES else None,  # type: ignore[arg-type]
        ce_overrides=kafka.ce_overrides or None,
        consumers=kafka.consumers,
    )
