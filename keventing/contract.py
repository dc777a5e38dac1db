"""The contract: the only document the control plane and the data plane share.

The controller publishes one record per data-plane resource on a compacted topic (key = resource id,
tombstone on delete). An :class:`Ingress` tells the receiver which path writes to which topic; an
:class:`Egress` tells the dispatcher which consumer group reads which topic, what it filters, where it
delivers, where replies go, and how delivery is retried; a :class:`Source` tells the sources runner what to
schedule or run and where its events go.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from keventing.kafka.connection import KafkaConnection

CONTRACT_VERSION = 1


class ContractModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class DeliveryPolicy(ContractModel):
    """A resolved DeliverySpec: durations in seconds, the dead-letter sink as a URL."""

    retry: int = 0
    backoff_policy: Literal["linear", "exponential"] = "exponential"
    backoff_delay: float = 0.2
    timeout: float | None = None
    retry_after_max: float | None = None
    backoff_max: float | None = None
    format: Literal["json", "binary"] | None = None
    dead_letter_url: str | None = None
    # The dead-letter sink's CACerts (PEM, trusted besides the system's) and OIDC audience.
    dead_letter_ca_certs: str | None = None
    dead_letter_audience: str | None = None


class Reply(ContractModel):
    """Where a subscriber's reply goes: back onto a topic (a Broker), to a URL, or nowhere."""

    strategy: Literal["topic", "url", "discard"] = "discard"
    topic: str | None = None
    url: str | None = None
    # A url reply's CACerts and OIDC audience (see Egress.destination_*).
    ca_certs: str | None = None
    audience: str | None = None


class FilterSpec(ContractModel):
    attributes: dict[str, str] | None = None
    filters: list[dict[str, Any]] | None = None


class Transform(ContractModel):
    """An EventTransform's work: the JSONata expression, where the result goes (None: back as the reply)
    and what becomes of the sink's reply (transformed by ``reply_expression``, or discarded)."""

    expression: str
    sink: str | None = None
    # The sink's CACerts and OIDC audience (see Egress.destination_*).
    sink_ca_certs: str | None = None
    sink_audience: str | None = None
    reply_expression: str | None = None
    reply_discard: bool = False


class IngressPolicy(ContractModel):
    """An EventPolicy that applies to an ingress: the senders' subjects it allows (a trailing ``*`` matches
    any rest) and the filters their events must match besides (Trigger dialects; None: any event)."""

    name: str
    subs: tuple[str, ...] = ()
    filters: list[dict[str, Any]] | None = None


class RequestReplyIngress(ContractModel):
    """A RequestReply: the request is produced to the Broker's topic with a signed correlation id in
    ``correlation_attribute``; the reply is the event on that topic whose ``reply_attribute`` carries it."""

    correlation_attribute: str
    reply_attribute: str
    timeout: float


class Ingress(ContractModel):
    id: str
    kind: str
    namespace: str
    name: str
    path: str
    topic: str
    content_mode: Literal["binary", "structured"] = "binary"
    # Record (type, source) pairs seen at this ingress as EventTypes.
    event_types: bool = False
    # False for a topic managed outside keventing (a KafkaSink's existing topic): never deleted.
    owns_topic: bool = True
    # The cluster the topic is on, credentials inlined, when it is not the receiver's own (a Broker's
    # kafka-broker-config, a KafkaSink's bootstrapServers and auth). The contract topic is reserved: no
    # resource can read it, so credentials are no more exposed here than in the resource store.
    connection: KafkaConnection | None = None
    # An EventTransform: the receiver transforms and answers, nothing is produced (``topic`` is empty).
    transform: Transform | None = None
    # Knative's audience of the resource (``eventing.knative.dev/broker/<ns>/<name>``): with
    # authentication-oidc enabled the receiver accepts only a token issued for it.
    audience: str | None = None
    # The EventPolicies that apply (authentication-oidc): a sender must be allowed by one of them. None: no
    # policy applies, the receiver's default authorization mode decides.
    policies: tuple[IngressPolicy, ...] | None = None
    # A RequestReply: answered with the correlated reply event (or 504), its request produced to ``topic``.
    request_reply: RequestReplyIngress | None = None
    # config-features as the controller applies them (its environment, or the ConfigMap): whether senders
    # must present a token for ``audience`` (authentication-oidc), and who may send when no EventPolicy
    # applies. None (a contract from before): the receiver's own settings decide.
    oidc: bool | None = None
    default_authorization_mode: Literal["allow-same-namespace", "allow-all", "deny-all"] | None = None


class ServiceAccount(ContractModel):
    """A Kubernetes ServiceAccount: whose OIDC tokens (TokenRequest) an egress sends (authentication-oidc)."""

    namespace: str
    name: str


class JobRun(ContractModel):
    """A JobSink's work (Kubernetes mode): for each event, a Secret holding it and a Job made from
    ``template`` (the JobSink's ``spec.job``, a batch/v1 Job), both owned by the JobSink (``uid``)."""

    api_version: str
    uid: str
    template: dict[str, Any]


class Egress(ContractModel):
    id: str
    kind: str
    namespace: str
    name: str
    uid: str
    topics: tuple[str, ...]
    consumer_group: str
    destination: str | None = None
    # The Destination's CACerts (PEM: trusted for an https destination besides the system's CAs) and
    # audience (the dispatcher sends an OIDC token for it).
    destination_ca_certs: str | None = None
    destination_audience: str | None = None
    # Kubernetes mode: the Trigger's or Subscription's OIDC identity, whose tokens go to every audience it
    # sends to (subscriber, reply, dead-letter sink). None: the dispatcher's token command (local mode).
    identity: ServiceAccount | None = None
    prefer_reply: bool = True
    reply: Reply = Field(default_factory=Reply)
    filter: FilterSpec = Field(default_factory=FilterSpec)
    delivery: DeliveryPolicy = Field(default_factory=DeliveryPolicy)
    delivery_order: Literal["ordered", "unordered"] = "unordered"
    initial_offset: Literal["latest", "earliest"] = "latest"
    # Set when the egress reads another cluster than the dispatcher's own (a KafkaSource's, a Broker's
    # kafka-broker-config's), credentials inlined (see Ingress.connection).
    connection: KafkaConnection | None = None
    # KafkaSource: how record keys are read (the key-type label) and extensions added to every event.
    key_type: Literal["string", "int", "float", "byte-array"] | None = None
    ce_overrides: dict[str, str] | None = None
    # A JobSink's: the destination is ``job:<namespace>/<name>`` and each event becomes a Job of this template.
    job: JobRun | None = None
    # The members of the consumer group (a KafkaSource's spec.consumers, Knative's virtual replicas), run
    # between them by the dispatcher replicas, each on the one that owns its slot (keventing.ownership).
    # None: one on every dispatcher replica (Triggers, Subscriptions). 0: none (a KafkaSource scaled to zero).
    consumers: int | None = Field(default=None, ge=0)
    # A paused Trigger (keventing.knative.dev/paused): no dispatcher runs it, so its consumer group has no
    # members and its committed offsets can be altered; its group is kept.
    paused: bool = False

    @model_validator(mode="before")
    @classmethod
    def _legacy_bootstrap_servers(cls, data: Any) -> Any:
        """Entries published before connections named only the bootstrap servers of another cluster."""
        if isinstance(data, dict) and data.get("bootstrap_servers") and not data.get("connection"):
            data = {**data, "connection": {"bootstrap_servers": data["bootstrap_servers"]}}
        return data


class PingSchedule(ContractModel):
    """A PingSource's schedule and the data every tick carries (base64, so any bytes survive JSON)."""

    schedule: str
    timezone: str | None = None
    content_type: str | None = None
    data_base64: str | None = None


class TimerSchedule(ContractModel):
    """An IntegrationSource's timer: every ``period_ms`` the message, ``repeat_count`` times at most."""

    period_ms: int
    message: str
    content_type: str
    repeat_count: int | None = None


class ContainerProcess(ContractModel):
    """A ContainerSource's first container as a local process: argv, its own env, working directory."""

    argv: tuple[str, ...]
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None


class WatchedResource(ContractModel):
    """One kind an ApiServerSource watches, with its label selector in the API server's query syntax."""

    api_version: str
    kind: str
    label_selector: str = ""


class ApiServerWatch(ContractModel):
    """What an ApiServerSource watches, as whom, and what it sends (``mode`` Reference or Resource).

    ``namespace_selector`` None: the source's own namespace; "" (Knative's ``{}``): every namespace.
    ``generation`` is the resource's, so that the runner's report says which spec it checked.
    """

    resources: tuple[WatchedResource, ...]
    mode: Literal["Reference", "Resource"] = "Reference"
    service_account: str = "default"
    namespace_selector: str | None = None
    owner_api_version: str | None = None
    owner_kind: str | None = None
    filters: list[dict[str, Any]] | None = None
    generation: int = 1


class Source(ContractModel):
    """A source adapter the sources runner runs: where it sends events and what it sends."""

    id: str
    kind: str
    namespace: str
    name: str
    uid: str
    sink: str
    # The sink's CACerts (PEM, trusted besides the system's) and OIDC audience (see Egress.destination_*).
    sink_ca_certs: str | None = None
    sink_audience: str | None = None
    # Kubernetes mode: the source's own OIDC identity (see Egress.identity); None: the runner's token command.
    identity: ServiceAccount | None = None
    ce_overrides: dict[str, str] = Field(default_factory=dict)
    ping: PingSchedule | None = None
    timer: TimerSchedule | None = None
    container: ContainerProcess | None = None
    apiserver: ApiServerWatch | None = None


class ContractEntry(ContractModel):
    version: int = CONTRACT_VERSION
    ingress: Ingress | None = None
    egress: Egress | None = None
    source: Source | None = None

    @property
    def id(self) -> str:
        item = self.ingress or self.egress or self.source
        assert item is not None
        return item.id

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def decode(cls, value: bytes) -> ContractEntry:
        entry = cls.model_validate(orjson.loads(value))
        if entry.version > CONTRACT_VERSION:
            raise ValueError(
                f"contract version {entry.version} is newer than this data plane ({CONTRACT_VERSION})"
            )
        return entry
