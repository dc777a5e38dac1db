"""Knative's Secret keys → a Kafka connection, and what a connection may show of itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from keventing.kafka.connection import (
    KafkaConnection,
    KafkaConnectionInvalid,
    client_options,
    connection_from_secret,
)
from keventing.settings import CommonSettings


def test_a_secret_with_credentials_and_a_protocol_is_a_sasl_connection() -> None:
    conn = connection_from_secret(
        "k:9093",
        {"protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256", "user": "u", "password": "p"},
    )
    assert (conn.security_protocol, conn.sasl_mechanism, conn.user, conn.password) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-256",
        "u",
        "p",
    )
    options = client_options(conn)
    assert options["sasl_plain_password"] == "p" and "ssl_context" not in options


def test_the_protocol_defaults_from_what_the_secret_holds() -> None:
    assert connection_from_secret("k:1", {}).security_protocol == "PLAINTEXT"
    assert connection_from_secret("k:1", {"user": "u", "password": "p"}).security_protocol == "SASL_PLAINTEXT"
    assert connection_from_secret("k:1", {"user": "u", "password": "p"}).sasl_mechanism == "PLAIN"
    assert connection_from_secret("k:1", {"tls.enabled": "true"}).security_protocol == "SSL"
    legacy = connection_from_secret("k:1", {"saslType": "SCRAM-SHA-512", "user": "u", "password": "p"})
    assert legacy.sasl_mechanism == "SCRAM-SHA-512"


def test_tls_verifies_the_broker_and_its_hostname() -> None:
    options = client_options(KafkaConnection(bootstrap_servers="k:1", security_protocol="SSL"))
    context = options["ssl_context"]
    assert context.check_hostname is True and context.verify_mode.name == "CERT_REQUIRED"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"protocol": "SASL_SSL_PLEASE"}, "not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
        (
            {"protocol": "SASL_SSL", "sasl.mechanism": "GSSAPI", "user": "u", "password": "p"},
            "not one of PLAIN",
        ),
        ({"protocol": "SASL_SSL", "user": "u"}, "needs a user and a password"),
        ({"protocol": "SSL", "user.crt": "x"}, "needs its key"),
        ({"protocol": "SSL", "ca.crt": "not a pem"}, "ca.crt"),
        ({"protocol": "PLAINTEXT", "user.crt": "c", "user.key": "k"}, "needs TLS"),
    ],
)
def test_a_secret_that_cannot_work_says_why(data: dict[str, str], message: str) -> None:
    with pytest.raises(KafkaConnectionInvalid, match=message):
        connection_from_secret("k:1", data)


def test_a_connection_never_shows_its_password_or_key() -> None:
    conn = KafkaConnection(
        bootstrap_servers="k:1",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        user="u",
        password="hunter2",
        client_key="PRIVATE",
    )
    assert "hunter2" not in repr(conn) and "PRIVATE" not in repr(conn)
    assert "hunter2" not in conn.describe() and conn.describe() == "k:1 SASL_PLAINTEXT PLAIN as u"


def test_the_service_connection_comes_from_a_mounted_secret_and_variables(tmp_path: Path) -> None:
    (tmp_path / "protocol").write_text("SASL_PLAINTEXT\n")
    (tmp_path / "sasl.mechanism").write_text("SCRAM-SHA-512")
    (tmp_path / "user").write_text("from-file")
    (tmp_path / "password").write_text("pw")
    settings = CommonSettings(  # type: ignore[call-arg]
        KAFKA_BOOTSTRAP_SERVERS="k:1", KAFKA_AUTH_SECRET_DIR=str(tmp_path), KAFKA_SASL_USER="from-env"
    )
    conn = settings.kafka_connection
    assert (conn.security_protocol, conn.sasl_mechanism, conn.user, conn.password) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-512",
        "from-env",
        "pw",
    )
    assert "pw" not in repr(settings).replace("kafka_sasl_password", "")


def test_a_missing_ca_file_is_a_clear_error() -> None:
    settings = CommonSettings(KAFKA_SSL_CA_FILE="/nonexistent/ca.crt")  # type: ignore[call-arg]
    with pytest.raises(KafkaConnectionInvalid, match="KAFKA_SSL_CA_FILE: cannot read /nonexistent/ca.crt"):
        _ = settings.kafka_connection
