"""Settings every service shares, read from environment variables (documented in the README)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from keventing.contractauth import ContractKeys
    from keventing.eventtypes import EventTypeLimits
    from keventing.kafka.connection import KafkaConnection
    from keventing.serviceaccounttokens import ServiceAccountTokenSource


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    # Knative's `bootstrap.servers`; the same variable points the CLI and the tests at a cluster.
    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", alias="KAFKA_BOOTSTRAP_SERVERS")
    # How every client of this service reaches that cluster (README, "Kafka connections"): a directory
    # with Knative's Secret keys as files (a mounted Secret), and variables that override single keys.
    kafka_auth_secret_dir: str | None = Field(default=None, alias="KAFKA_AUTH_SECRET_DIR")
    kafka_security_protocol: str | None = Field(default=None, alias="KAFKA_SECURITY_PROTOCOL")
    kafka_sasl_mechanism: str | None = Field(default=None, alias="KAFKA_SASL_MECHANISM")
    kafka_sasl_user: str | None = Field(default=None, alias="KAFKA_SASL_USER")
    kafka_sasl_password: str | None = Field(default=None, alias="KAFKA_SASL_PASSWORD", repr=False)
    kafka_ssl_ca_file: str | None = Field(default=None, alias="KAFKA_SSL_CA_FILE")
    kafka_ssl_cert_file: str | None = Field(default=None, alias="KAFKA_SSL_CERT_FILE")
    kafka_ssl_key_file: str | None = Field(default=None, alias="KAFKA_SSL_KEY_FILE")
    # Names the control-plane topics (<instance>.resources, .status, .contract, ...) so that several
    # keventing installations can share one Kafka cluster.
    instance: str = Field(default="keventing", alias="KEVENTING_INSTANCE")
    # Replicas of the control-plane topics (resources, statuses, the contract); 3 on a production cluster.
    control_plane_replication_factor: int = Field(
        default=1, alias="KEVENTING_CONTROL_PLANE_REPLICATION_FACTOR"
    )
    # The keys the contract is signed with (README, "Security and tenant isolation"): comma-separated, the
    # first signs, any verifies; or a file of them (a mounted Secret). Every service refuses to start without.
    contract_key: str | None = Field(default=None, alias="KEVENTING_CONTRACT_KEY", repr=False)
    contract_key_file: str | None = Field(default=None, alias="KEVENTING_CONTRACT_KEY_FILE")
    log_level: str = Field(default="INFO", alias="KEVENTING_LOG_LEVEL")
    # EventType auto-creation's bounds (see keventing.eventtypes.EventTypeLimits).
    eventtype_max_per_addressable: int = Field(default=1000, ge=0, alias="KEVENTING_EVENTTYPE_MAX_PER_BROKER")
    eventtype_max_total: int = Field(default=10000, ge=0, alias="KEVENTING_EVENTTYPE_MAX_TOTAL")
    eventtype_create_rate: float = Field(default=50.0, gt=0, alias="KEVENTING_EVENTTYPE_CREATE_RATE")
    log_format: str = Field(default="json", alias="KEVENTING_LOG_FORMAT")
    # false: metrics record the event type as "" (one series per resource and code, whatever the types).
    metrics_event_type: bool = Field(default=True, alias="KEVENTING_METRICS_EVENT_TYPE")
    # Knative's config-features flags (README, "HTTPS and OIDC"): which addresses the controller publishes
    # and what the receiver accepts; every service reads the same two so that they agree.
    transport_encryption: Literal["disabled", "permissive", "strict"] = Field(
        default="disabled", alias="KEVENTING_TRANSPORT_ENCRYPTION"
    )
    authentication_oidc: Literal["enabled", "disabled"] = Field(
        default="disabled", alias="KEVENTING_AUTHENTICATION_OIDC"
    )
    # Knative's default-authorization-mode: who may send to a resource no EventPolicy applies to.
    default_authorization_mode: Literal["allow-same-namespace", "allow-all", "deny-all"] = Field(
        default="allow-same-namespace", alias="KEVENTING_DEFAULT_AUTHORIZATION_MODE"
    )

    # The HTTP clients' side (dispatcher, sources runner): a PEM file of CA certificates trusted for every
    # https destination besides the system's (Knative's trust bundles: e.g. the CA of keventing's own
    # receiver), and the command printing an OIDC token for a destination's audience (keventing.tokens).
    tls_trust_bundle_file: str | None = Field(default=None, alias="KEVENTING_TLS_TRUST_BUNDLE")
    oidc_token_command: str | None = Field(default=None, alias="KEVENTING_OIDC_TOKEN_COMMAND")

    @property
    def oidc_enabled(self) -> bool:
        return self.authentication_oidc == "enabled"

    def trust_bundle(self) -> str | None:
        """The trust bundle's PEM; raises SystemExit naming the variable when it cannot be read."""
        path = self.tls_trust_bundle_file
        if not path:
            return None
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read()
        except OSError as err:
            raise SystemExit(f"KEVENTING_TLS_TRUST_BUNDLE: cannot read {path}: {err.strerror}") from None

    def contract_keys(self) -> ContractKeys:
        """The contract's keys; raises SystemExit naming the variable when none is set or one is unusable."""
        from keventing.contractauth import ContractKeyInvalid, parse_keys

        variable, text = "KEVENTING_CONTRACT_KEY", self.contract_key
        if not text and self.contract_key_file:
            variable = "KEVENTING_CONTRACT_KEY_FILE"
            try:
                with open(self.contract_key_file, encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as err:
                raise SystemExit(
                    f"{variable}: cannot read {self.contract_key_file}: {err.strerror}"
                ) from None
        if not text:
            raise SystemExit(
                "KEVENTING_CONTRACT_KEY (or KEVENTING_CONTRACT_KEY_FILE) is not set: the controller signs the "
                "contract with it and the data plane accepts only what it signed; give every service the "
                "same key (kev up and the Helm chart generate one)"
            )
        try:
            return parse_keys(text)
        except ContractKeyInvalid as err:
            raise SystemExit(f"{variable}: {err}") from None

    def token_source(self) -> ServiceAccountTokenSource:
        """Where OIDC tokens come from when authentication-oidc is enabled: TokenRequest for a sender with a
        ServiceAccount of its own (Kubernetes mode), the token command for the others."""
        from keventing.serviceaccounttokens import ServiceAccountTokenSource
        from keventing.tokens import CommandTokenSource

        # Made whatever authentication-oidc says here: the controller decides (a destination has an audience
        # only while the flag is on, in config-features or the environment), and a token it cannot get is a
        # failed attempt, never a send without one.
        command = CommandTokenSource(self.oidc_token_command) if self.oidc_token_command else None
        return ServiceAccountTokenSource(command)

    @functools.cached_property
    def kafka_connection(self) -> KafkaConnection:
        """The service's own connection: its control-plane topics and every resource without one of its own.
        Raises KafkaConnectionInvalid with the variable's fault (a service then refuses to start)."""
        from keventing.kafka import connection as kafka

        data = kafka.read_secret_dir(self.kafka_auth_secret_dir) if self.kafka_auth_secret_dir else {}
        values = {
            kafka.PROTOCOL_KEY: self.kafka_security_protocol,
            kafka.SASL_MECHANISM_KEY: self.kafka_sasl_mechanism,
            kafka.USER_KEY: self.kafka_sasl_user,
            kafka.PASSWORD_KEY: self.kafka_sasl_password,
        }
        files = {
            kafka.CA_KEY: ("KAFKA_SSL_CA_FILE", self.kafka_ssl_ca_file),
            kafka.CERT_KEY: ("KAFKA_SSL_CERT_FILE", self.kafka_ssl_cert_file),
            kafka.KEY_KEY: ("KAFKA_SSL_KEY_FILE", self.kafka_ssl_key_file),
        }
        for key, (variable, path) in files.items():
            if path:
                try:
                    with open(path, encoding="utf-8") as fh:
                        values[key] = fh.read()
                except OSError as err:
                    raise kafka.KafkaConnectionInvalid(
                        f"{variable}: cannot read {path}: {err.strerror}"
                    ) from None
        data.update({key: value for key, value in values.items() if value is not None})
        return kafka.connection_from_secret(self.kafka_bootstrap_servers, data)

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
