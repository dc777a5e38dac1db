"""The dispatcher's side of HTTPS and OIDC: TLS contexts always verify, unusable CACerts fail the
delivery with a reason, tokens come from the configured command once per audience and lifetime."""

from __future__ import annotations

import ssl
import sys
import time
from pathlib import Path

import jwt
import pytest

from dispatcher.http1 import Http1Post
from dispatcher.transport import TransportError
from keventing.tokens import CommandTokenSource, TokenUnavailable


async def test_every_tls_context_verifies_the_certificate_and_the_hostname() -> None:
    post = Http1Post()
    for ca_certs in (None, _self_signed_ca()):
        context = post.tls_context(ca_certs)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


async def test_cacerts_that_are_not_pem_fail_the_delivery_with_a_reason() -> None:
    post = Http1Post()
    with pytest.raises(TransportError, match="CACerts are not usable PEM"):
        await post.post("https://127.0.0.1:1/x", {}, b"", 1.0, ca_certs="not a certificate")


def _self_signed_ca() -> str:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unit test CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _command(tmp_path: Path, body: str) -> str:
    script = tmp_path / "issue.py"
    script.write_text(body)
    return f"{sys.executable} {script} {tmp_path / 'calls'}"


ISSUE = """
import sys, time, jwt
open(sys.argv[1], "a").write(sys.argv[2] + "\\n")
print(jwt.encode({"aud": sys.argv[2], "exp": int(time.time()) + 600}, "k" * 32, algorithm="HS256"))
"""


async def test_a_token_is_asked_for_once_per_audience_while_it_is_valid(tmp_path: Path) -> None:
    tokens = CommandTokenSource(_command(tmp_path, ISSUE))
    first = await tokens.token("a")
    assert await tokens.token("a") == first
    other = await tokens.token("b")
    assert jwt.decode(other, options={"verify_signature": False})["aud"] == "b"
    assert (tmp_path / "calls").read_text().split() == ["a", "b"]


async def test_a_token_about_to_expire_is_asked_for_again(tmp_path: Path) -> None:
    soon = ISSUE.replace("+ 600", "+ 30")  # within the minute before exp
    tokens = CommandTokenSource(_command(tmp_path, soon))
    await tokens.token("a")
    time.sleep(0.01)
    await tokens.token("a")
    assert (tmp_path / "calls").read_text().split() == ["a", "a"]


async def test_a_failing_token_command_says_so_without_its_output(tmp_path: Path) -> None:
    tokens = CommandTokenSource(_command(tmp_path, "import sys; print('secret-ish'); sys.exit(3)"))
    with pytest.raises(TokenUnavailable, match="exited with 3") as caught:
        await tokens.token("a")
    assert "secret-ish" not in str(caught.value)
