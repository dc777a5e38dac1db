"""TLS for keventing's HTTP clients (dispatcher deliveries, source events): contexts that always verify the
server's certificate and hostname, trusting the system's CAs, a trust bundle (Knative's trust bundles: the
CAs of the cluster's own services) and a destination's ``CACerts``. There is no switch to turn it off."""

from __future__ import annotations

import ssl


class TrustUnusable(Exception):
    """A trust bundle or a Destination's CACerts are not usable PEM certificates."""


class ClientTrust:
    def __init__(self, trust_bundle: str | None = None) -> None:
        self.trust_bundle = trust_bundle
        self._contexts: dict[str | None, ssl.SSLContext] = {}  # one per CACerts value, built once

    def context(self, ca_certs: str | None) -> ssl.SSLContext:
        context = self._contexts.get(ca_certs)
        if context is None:
            context = ssl.create_default_context()  # the system's CAs, CERT_REQUIRED, check_hostname
            for what, pem in (
                ("the trust bundle", self.trust_bundle),
                ("the Destination's CACerts", ca_certs),
            ):
                if pem:
                    try:
                        context.load_verify_locations(cadata=pem)
                    except (ssl.SSLError, ValueError) as err:
                        raise TrustUnusable(f"{what} are not usable PEM certificates: {err}") from None
            self._contexts[ca_certs] = context
        return context
