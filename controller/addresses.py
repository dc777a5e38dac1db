"""The addresses an Addressable served by keventing's receiver publishes, by Knative's transport-encryption
mode, with its OIDC audience when authentication-oidc is enabled.

- ``disabled``: ``status.address`` is the http URL.
- ``permissive``: ``status.address`` is the http URL; ``status.addresses`` lists the https URL (with the
  receiver's CA certificates) and the http URL.
- ``strict``: ``status.address`` and ``status.addresses`` are the https URL only.
"""

from __future__ import annotations

from controller.context import ControllerConfig
from keventing.resources import Resource, Status
from keventing.resources.base import Address


def audience(resource: Resource) -> str:
    """Knative's audience of a resource: ``<group>/<kind>/<namespace>/<name>``, lower-cased."""
    group = resource.apiVersion.rpartition("/")[0]
    return f"{group}/{resource.KIND}/{resource.namespace}/{resource.name}".lower()


def set_address(status: Status, config: ControllerConfig, path: str, resource: Resource) -> None:
    """Give ``status`` the addresses of ``resource`` at ``path`` on keventing's ingress."""
    aud = audience(resource) if config.oidc else None
    http = Address(name="http", url=config.ingress_url + path, audience=aud)
    https = Address(
        name="https", url=config.ingress_https_url + path, CACerts=config.ingress_ca_certs, audience=aud
    )
    if config.transport_encryption == "strict":
        status.address, status.addresses = https, [https.model_copy()]
    elif config.transport_encryption == "permissive":
        status.address, status.addresses = http, [https, http.model_copy()]
    else:
        status.address, status.addresses = http, None
