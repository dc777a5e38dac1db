"""How to reach one Kafka cluster: bootstrap servers, TLS and SASL. Every Kafka client keventing makes
is built from a :class:`KafkaConnection` (see :mod:`keventing.kafka.client`).

Credentials arrive in Knative's Secret shape (``protocol``, ``sasl.mechanism``, ``user``, ``password``,
``ca.crt``, ``user.crt``, ``user.key``); :func:`connection_from_secret` is the one place that reads it,
whether the Secret is a service's own (a mounted directory, environment variables), a Broker's
``auth.secret.ref.name``, a KafkaSink's ``spec.auth.secret.ref`` or a KafkaSource's ``spec.net``.

A connection is a value: equal connections share one client in the data plane's pools, and it travels
inside contract entries. Its ``repr`` and :meth:`KafkaConnection.describe` never show a password or a key.
"""

from __future__ import annotations

import functools
import os
import ssl
import tempfile
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SECURITY_PROTOCOLS: tuple[str, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

# Knative's Secret keys (eventing-kafka-broker), and the older keys it still reads.
PROTOCOL_KEY = "protocol"
SASL_MECHANISM_KEY = "sasl.mechanism"
USER_KEY = "user"
PASSWORD_KEY = "password"
CA_KEY = "ca.crt"
CERT_KEY = "user.crt"
KEY_KEY = "user.key"
SECRET_KEYS = (PROTOCOL_KEY, SASL_MECHANISM_KEY, USER_KEY, PASSWORD_KEY, CA_KEY, CERT_KEY, KEY_KEY)
_LEGACY_MECHANISM_KEY = "saslType"
_LEGACY_TLS_KEY = "tls.enabled"


class KafkaConnectionInvalid(ValueError):
    """A connection's settings cannot work; the message says which one and what to give instead."""


class KafkaConnection(BaseModel):
    """Bootstrap servers plus Kafka's ``security.protocol``, the SASL mechanism and credentials, and PEM
    TLS material (a CA to trust, a client certificate and key for mTLS). Hostnames are always verified."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    bootstrap_servers: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    user: str | None = None
    password: str | None = Field(default=None, repr=False)
    ca_cert: str | None = Field(default=None, repr=False)
    client_cert: str | None = Field(default=None, repr=False)
    client_key: str | None = Field(default=None, repr=False)

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def describe(self) -> str:
        """What a log line or a status may say about this connection: never a credential."""
        parts = [self.bootstrap_servers, self.security_protocol]
        if self.uses_sasl:
            parts.append(f"{self.sasl_mechanism} as {self.user}")
        if self.client_cert:
            parts.append("client certificate")
        return " ".join(parts)

    def validate_settings(self) -> KafkaConnection:
        """Raise :class:`KafkaConnectionInvalid` unless these settings can make a connection."""
        if not self.bootstrap_servers.strip():
            raise KafkaConnectionInvalid("bootstrap servers are missing")
        if self.uses_sasl:
            if self.sasl_mechanism is None:
                raise KafkaConnectionInvalid(
                    f"{self.security_protocol} needs a SASL mechanism ({', '.join(SASL_MECHANISMS)})"
                )
            if not self.user or self.password is None:
                raise KafkaConnectionInvalid(f"{self.security_protocol} needs a user and a password")
        if (self.client_cert is None) != (self.client_key is None):
            raise KafkaConnectionInvalid("a client certificate needs its key, and a key its certificate")
        if self.client_cert is not None and not self.uses_tls:
            raise KafkaConnectionInvalid(
                f"a client certificate needs TLS, but the protocol is {self.security_protocol}"
            )
        if self.uses_tls:
            ssl_context(self)  # a bad PEM fails here, with the reason, rather than at the first connect
        return self


Connectable = KafkaConnection | str


def as_connection(connection: Connectable) -> KafkaConnection:
    """A bare bootstrap string is a PLAINTEXT connection (tests, benchmarks, a developer's laptop)."""
    return KafkaConnection(bootstrap_servers=connection) if isinstance(connection, str) else connection


def client_options(connection: Connectable) -> dict[str, Any]:
    """The aiokafka keyword arguments for ``connection``: the only place a client's security is set."""
    conn = as_connection(connection)
    options: dict[str, Any] = {
        "bootstrap_servers": conn.bootstrap_servers,
        "security_protocol": conn.security_protocol,
    }
    if conn.uses_tls:
        options["ssl_context"] = ssl_context(conn)
    if conn.uses_sasl:
        options["sasl_mechanism"] = conn.sasl_mechanism
        options["sasl_plain_username"] = conn.user
        options["sasl_plain_password"] = conn.password
    return options


@functools.lru_cache(maxsize=64)
def ssl_context(conn: KafkaConnection) -> ssl.SSLContext:
    """A client TLS context: the connection's CA (else the system's), hostname verification on, and the
    client certificate for mTLS. Cached: every client of one connection shares it."""
    try:
        context = (
            ssl.create_default_context(cadata=conn.ca_cert) if conn.ca_cert else ssl.create_default_context()
        )
    except ssl.SSLError as err:
        raise KafkaConnectionInvalid(f"the CA certificate (ca.crt) is not a PEM certificate: {err}") from None
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if conn.client_cert is not None and conn.client_key is not None:
        _load_client_certificate(context, conn.client_cert, conn.client_key)
    return context


def _load_client_certificate(context: ssl.SSLContext, cert: str, key: str) -> None:
    # The ssl module loads a certificate chain from files only: a private directory, removed at once.
    with tempfile.TemporaryDirectory(prefix="keventing-tls-") as directory:
        cert_path, key_path = os.path.join(directory, "user.crt"), os.path.join(directory, "user.key")
        for path, text in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as err:
            raise KafkaConnectionInvalid(
                f"the client certificate (user.crt) and key (user.key) cannot be loaded: {err.reason or err}"
            ) from None


def connection_from_secret(bootstrap_servers: str, data: Mapping[str, str]) -> KafkaConnection:
    """The connection Knative's Secret keys describe (the one place they are parsed).

    ``protocol`` defaults as Knative's does: SASL_SSL with credentials and a CA, SASL_PLAINTEXT with
    credentials only, SSL with a CA or client certificate only, else PLAINTEXT.
    """
    get = {k: v for k, v in data.items() if v is not None}.get
    mechanism = (get(SASL_MECHANISM_KEY) or get(_LEGACY_MECHANISM_KEY) or "").strip().upper() or None
    user, password = get(USER_KEY), get(PASSWORD_KEY)
    ca, cert, key = get(CA_KEY) or None, get(CERT_KEY) or None, get(KEY_KEY) or None
    protocol = (get(PROTOCOL_KEY) or "").strip().upper()
    if not protocol:
        tls = bool(ca or cert) or (get(_LEGACY_TLS_KEY) or "").strip().lower() == "true"
        sasl = bool(user or mechanism)
        protocol = {(True, True): "SASL_SSL", (False, True): "SASL_PLAINTEXT", (True, False): "SSL"}.get(
            (tls, sasl), "PLAINTEXT"
        )
    if protocol not in SECURITY_PROTOCOLS:
        raise KafkaConnectionInvalid(
            f"{PROTOCOL_KEY} {protocol!r} is not one of {', '.join(SECURITY_PROTOCOLS)}"
        )
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        mechanism = mechanism or "PLAIN"  # Kafka's default mechanism
        if mechanism not in SASL_MECHANISMS:
            raise KafkaConnectionInvalid(
                f"{SASL_MECHANISM_KEY} {mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}"
            )
    else:
        mechanism = None
    connection = KafkaConnection(
        bootstrap_servers=bootstrap_servers.strip(),
        security_protocol=protocol,  # type: ignore[arg-type]
        sasl_mechanism=mechanism,  # type: ignore[arg-type]
        user=user if mechanism else None,
        password=password if mechanism else None,
        ca_cert=ca,
        client_cert=cert,
        client_key=key,
    )
    return connection.validate_settings()


def read_secret_dir(path: str) -> dict[str, str]:
    """Knative's Secret keys from a directory holding one file per key (a Secret mounted as a volume)."""
    if not os.path.isdir(path):
        raise KafkaConnectionInvalid(f"KAFKA_AUTH_SECRET_DIR {path} is not a directory")
    data = {}
    for key in (*SECRET_KEYS, _LEGACY_MECHANISM_KEY, _LEGACY_TLS_KEY):
        file = os.path.join(path, key)
        if os.path.isfile(file):
            with open(file, encoding="utf-8") as fh:
                value = fh.read()
            data[key] = value if key in (CA_KEY, CERT_KEY, KEY_KEY, PASSWORD_KEY) else value.strip()
    return data
