"""The receiver's settings (environment variables, see the README)."""

from __future__ import annotations

from pydantic import Field

from keventing.settings import CommonSettings


class ReceiverSettings(CommonSettings):
    http_host: str = Field(default="0.0.0.0", alias="KEVENTING_HTTP_HOST")
    http_port: int = Field(default=8080, alias="KEVENTING_RECEIVER_PORT")
    workers: int = Field(default=1, alias="KEVENTING_RECEIVER_WORKERS")
    max_event_bytes: int = Field(default=1024 * 1024, alias="KEVENTING_MAX_EVENT_BYTES")
    # How long a request may wait for Kafka's acknowledgement before it is answered 503.
    produce_timeout_seconds: float = Field(default=10.0, alias="KEVENTING_PRODUCE_TIMEOUT_SECONDS")
    retry_after_seconds: int = Field(default=5, alias="KEVENTING_RETRY_AFTER_SECONDS")
    # Request line plus headers (431 above either bound): Kafka stores every header, so they count too.
    max_header_count: int = Field(default=100, alias="KEVENTING_MAX_HEADER_COUNT")
    max_header_bytes: int = Field(default=64 * 1024, alias="KEVENTING_MAX_HEADER_BYTES")
    # From a request's first byte to its last header (408 after), and for the whole body (408 after).
    header_timeout_seconds: float = Field(default=10.0, alias="KEVENTING_HEADER_TIMEOUT_SECONDS")
    body_timeout_seconds: float = Field(default=30.0, alias="KEVENTING_BODY_TIMEOUT_SECONDS")
    # Open connections or requests in flight per worker (503 with Retry-After above).
    max_concurrency: int = Field(default=1000, alias="KEVENTING_MAX_CONCURRENCY")
    # On SIGTERM: how long requests in flight may finish before they are cancelled, and the producer flushes.
    shutdown_timeout_seconds: float = Field(default=5.0, alias="KEVENTING_SHUTDOWN_TIMEOUT_SECONDS")
    # 0: the producer batches what arrives while a request is in flight; lingering only adds latency.
    linger_ms: int = Field(default=0, alias="KEVENTING_PRODUCER_LINGER_MS")
    # Set (by `kev receiver` itself) when several workers serve: each keeps its metrics in files there.
    metrics_multiproc_dir: str | None = Field(default=None, alias="PROMETHEUS_MULTIPROC_DIR")
    # HTTPS beside HTTP (transport-encryption permissive or strict): the certificate chain and key (PEM).
    tls_cert_file: str | None = Field(default=None, alias="KEVENTING_TLS_CERT_FILE")
    tls_key_file: str | None = Field(default=None, alias="KEVENTING_TLS_KEY_FILE")
    https_port: int = Field(default=8443, alias="KEVENTING_RECEIVER_HTTPS_PORT")
    # authentication-oidc: the issuer whose tokens are accepted, the CA of its HTTPS endpoint if it is not
    # a public one, and how soon the keys may be fetched again for a token with an unknown key id.
    oidc_issuer: str | None = Field(default=None, alias="KEVENTING_OIDC_ISSUER")
    oidc_issuer_ca_file: str | None = Field(default=None, alias="KEVENTING_OIDC_ISSUER_CA_FILE")
    oidc_jwks_url: str | None = Field(default=None, alias="KEVENTING_OIDC_JWKS_URL")
    oidc_jwks_refresh_seconds: float = Field(default=10.0, ge=0, alias="KEVENTING_OIDC_JWKS_REFRESH_SECONDS")

    @property
    def serves_https(self) -> bool:
        return self.transport_encryption != "disabled"

    def problem(self) -> str | None:
        """Why these settings cannot work (the receiver then refuses to start), or None."""
        if self.serves_https and not (self.tls_cert_file and self.tls_key_file):
            return (
                f"KEVENTING_TRANSPORT_ENCRYPTION={self.transport_encryption} needs a certificate: set "
                "KEVENTING_TLS_CERT_FILE and KEVENTING_TLS_KEY_FILE"
            )
        if self.serves_https and self.workers > 1:
            return "HTTPS is served by one worker only: set KEVENTING_RECEIVER_WORKERS=1"
        if self.oidc_enabled and not self.oidc_issuer:
            return "KEVENTING_AUTHENTICATION_OIDC=enabled needs KEVENTING_OIDC_ISSUER (the issuer's URL)"
        return None
