"""The controller's settings (environment variables, see the README)."""

from __future__ import annotations

from pydantic import Field

from keventing.settings import CommonSettings


class ControllerSettings(CommonSettings):
    # The URL the receiver is reachable at; Broker addresses are <ingress_url>/<namespace>/<name>.
    ingress_url: str = Field(default="http://localhost:8080", alias="KEVENTING_INGRESS_URL")
    # How the dispatcher and the sources reach the receiver, if not by ingress_url (e.g. http://receiver:8080).
    internal_ingress_url: str | None = Field(default=None, alias="KEVENTING_INTERNAL_INGRESS_URL")
    # Where the receiver serves HTTPS (transport-encryption permissive or strict), and the PEM file of the CA
    # certificates that sign its certificate, published as the addresses' CACerts.
    ingress_https_url: str = Field(default="https://localhost:8443", alias="KEVENTING_INGRESS_HTTPS_URL")
    ingress_ca_file: str | None = Field(default=None, alias="KEVENTING_INGRESS_CA_FILE")
    internal_ingress_https_url: str | None = Field(default=None, alias="KEVENTING_INTERNAL_INGRESS_HTTPS_URL")
    default_partitions: int = Field(default=10, alias="KEVENTING_DEFAULT_TOPIC_PARTITIONS")
    default_replication_factor: int = Field(default=1, alias="KEVENTING_DEFAULT_TOPIC_REPLICATION_FACTOR")
    # Where Knative's ConfigMaps live: config-br-defaults, and the kafka-broker-config Brokers default to.
    system_namespace: str = Field(default="knative-eventing", alias="KEVENTING_SYSTEM_NAMESPACE")
    event_type_auto_create: bool = Field(default=True, alias="KEVENTING_EVENTTYPE_AUTO_CREATE")
    # Comma-separated prefixes a KafkaSink's or KafkaSource's topic must start with ({namespace} stands for
    # the resource's namespace); empty: any topic that is not reserved or another tenant's (README).
    user_topic_prefixes: str = Field(default="", alias="KEVENTING_USER_TOPIC_PREFIXES")
    resync_seconds: float = Field(default=30.0, alias="KEVENTING_RESYNC_SECONDS")
    http_host: str = Field(default="0.0.0.0", alias="KEVENTING_HTTP_HOST")
    http_port: int = Field(default=8091, alias="KEVENTING_CONTROLLER_PORT")
    # Kubernetes mode: resources come from the API server (kopf) instead of the local store.
    kubernetes: bool = Field(default=False, alias="KEVENTING_KUBERNETES")
    kubeconfig: str | None = Field(default=None, alias="KUBECONFIG")
    kube_context: str | None = Field(default=None, alias="KEVENTING_KUBE_CONTEXT")
    # Namespaces to watch, comma-separated; empty: every namespace.
    namespaces: str = Field(default="", alias="KEVENTING_NAMESPACES")
    # The eventing.knative.dev/broker.class values keventing claims ("Kafka": Knative's Kafka broker).
    broker_classes: str = Field(default="Kafka", alias="KEVENTING_BROKER_CLASSES")
    # Kubernetes mode: SinkBinding's mutating admission webhook (HTTPS) listens on this port; unset, there is
    # no webhook and only existing subjects are bound.
    webhook_port: int | None = Field(default=None, alias="KEVENTING_WEBHOOK_PORT")
    # Where the API server reaches the webhook: this URL (https://host:port) if set, else the Service below.
    webhook_url: str | None = Field(default=None, alias="KEVENTING_WEBHOOK_URL")
    webhook_service: str = Field(default="keventing-webhook", alias="KEVENTING_WEBHOOK_SERVICE")
    webhook_namespace: str = Field(default="default", alias="KEVENTING_WEBHOOK_NAMESPACE")
    webhook_configuration: str = Field(
        default="keventing-sinkbindings", alias="KEVENTING_WEBHOOK_CONFIGURATION"
    )
    # The Secret (in the webhook's namespace) holding the serving certificate every replica shares.
    webhook_secret: str = Field(default="keventing-webhook-certs", alias="KEVENTING_WEBHOOK_SECRET")
    # The ClusterRole (the chart's controller role) that owns the webhook registrations: deleting it (`helm
    # uninstall`) has Kubernetes' garbage collector delete them. Empty: they stay until deleted by hand.
    webhook_owner: str = Field(default="", alias="KEVENTING_WEBHOOK_OWNER")
    # How often each replica applies the registrations again (put back if deleted, owner reference renewed).
    webhook_reapply_seconds: float = Field(default=60.0, gt=0, alias="KEVENTING_WEBHOOK_REAPPLY_SECONDS")
    # Kubernetes mode: replicas elect a leader on a coordination.k8s.io Lease; only the leader reconciles.
    leader_election: bool = Field(default=True, alias="KEVENTING_LEADER_ELECTION")
    # The Lease's namespace (empty: the pod's own, else `default`) and name (empty: <instance>-controller).
    leader_election_namespace: str = Field(default="", alias="KEVENTING_LEADER_ELECTION_NAMESPACE")
    leader_election_lease_name: str = Field(default="", alias="KEVENTING_LEADER_ELECTION_LEASE_NAME")
    leader_election_lease_seconds: float = Field(
        default=15.0, alias="KEVENTING_LEADER_ELECTION_LEASE_SECONDS"
    )
    leader_election_renew_seconds: float = Field(default=5.0, alias="KEVENTING_LEADER_ELECTION_RENEW_SECONDS")

    @property
    def namespace_list(self) -> list[str]:
        return [n.strip() for n in self.namespaces.split(",") if n.strip()]

    @property
    def broker_class_set(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.broker_classes.split(",") if c.strip())
