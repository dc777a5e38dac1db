"""Secured embedded Kafkas for the tests: a CA and certificates made with openssl, SCRAM users made by
Kafka's own storage tool, one SASL_SSL broker and one mTLS broker, each started once per session and only
by the tests that ask for them (loaded from conftest.py as a plugin).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kev.kafka.embedded import EmbeddedKafka, ListenerSecurity, free_port
from keventing.kafka.connection import KafkaConnection, connection_from_secret

KEYSTORE_PASSWORD = "keystore-secret"
BROKER_USER, BROKER_PASSWORD = "broker", "broker-secret"
USER, PASSWORD = "keventing", "keventing-secret"


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


@dataclass(frozen=True)
class Pki:
    """A test CA, the broker's certificate (SAN IP:127.0.0.1) in a PKCS12 keystore, a client certificate,
    and a second CA that signed nothing the broker has (an untrusted CA)."""

    directory: Path

    @property
    def ca(self) -> str:
        return (self.directory / "ca.crt").read_text()

    @property
    def other_ca(self) -> str:
        return (self.directory / "other-ca.crt").read_text()

    @property
    def client_cert(self) -> str:
        return (self.directory / "client.crt").read_text()

    @property
    def client_key(self) -> str:
        return (self.directory / "client.key").read_text()

    @property
    def keystore(self) -> Path:
        return self.directory / "broker.p12"

    @property
    def truststore(self) -> Path:
        return self.directory / "ca.crt"


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    run = lambda *args: _openssl(*args, cwd=directory)  # noqa: E731
    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=keventing test {ca}",
            "-keyout", f"{ca}.key", "-out", f"{ca}.crt")  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, subject, extension in (("broker", "/CN=127.0.0.1", ["-extfile", "san.ext"]),
                                     ("client", "/CN=keventing-client", [])):  # fmt: skip
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", f"{name}.key",
            "-out", f"{name}.csr")  # fmt: skip
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-out", f"{name}.crt", *extension)  # fmt: skip
    run("pkcs12", "-export", "-in", "broker.crt", "-inkey", "broker.key", "-name", "broker",
        "-out", "broker.p12", "-passout", f"pass:{KEYSTORE_PASSWORD}")  # fmt: skip
    return Pki(directory)


@dataclass(frozen=True)
class SecuredKafka:
    broker: EmbeddedKafka
    pki: Pki
    # Knative's Secret keys of a client the broker accepts.
    secret: dict[str, str]

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    @property
    def connection(self) -> KafkaConnection:
        return connection_from_secret(self.bootstrap_servers, self.secret)


def _start(security: ListenerSecurity, data_dir: Path, pki: Pki) -> EmbeddedKafka:
    broker = EmbeddedKafka(
        port=free_port(), controller_port=free_port(), data_dir=data_dir, heap="384m", progress=print,
        security=security,
    )  # fmt: skip
    broker.start(timeout=180)
    return broker


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def sasl_ssl_kafka(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    """A Kafka whose only client listener is SASL_SSL with SCRAM-SHA-512 (users ``broker``, ``keventing``)."""
    secret = {"protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "user": USER, "password": PASSWORD,
              "ca.crt": pki.ca}  # fmt: skip
    security = ListenerSecurity(
        protocol="SASL_SSL",
        keystore=pki.keystore,
        keystore_password=KEYSTORE_PASSWORD,
        truststore=pki.truststore,
        client=secret,
        scram_users={BROKER_USER: BROKER_PASSWORD, USER: PASSWORD},
    )
    broker = _start(security, tmp_path_factory.mktemp("kafka-sasl-ssl"), pki)
    try:
        yield SecuredKafka(broker, pki, secret)
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def mtls_kafka(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    """A Kafka whose only client listener is SSL requiring a client certificate the test CA signed."""
    secret = {"protocol": "SSL", "ca.crt": pki.ca, "user.crt": pki.client_cert, "user.key": pki.client_key}
    security = ListenerSecurity(
        protocol="SSL",
        keystore=pki.keystore,
        keystore_password=KEYSTORE_PASSWORD,
        truststore=pki.truststore,
        client=secret,
        client_auth=True,
    )
    broker = _start(security, tmp_path_factory.mktemp("kafka-mtls"), pki)
    try:
        yield SecuredKafka(broker, pki, secret)
    finally:
        broker.stop()
