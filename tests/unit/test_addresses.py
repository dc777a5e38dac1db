"""The addresses a Broker publishes in each transport-encryption mode, with its OIDC audience; what a
Destination's CACerts and audience become in the contract."""

from __future__ import annotations

import pytest

from controller.addresses import audience, set_address
from controller.context import ControllerConfig
from controller.resolver import Resolver
from keventing.resources import Destination, Status, parse_resource
from keventing.resources.base import Address

BROKER = parse_resource(
    {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": "default", "namespace": "shop"},
    }
)
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _config(mode: str, oidc: bool = False) -> ControllerConfig:
    return ControllerConfig(
        ingress_url="http://ingress",
        ingress_https_url="https://ingress:8443",
        ingress_ca_certs=CA,
        transport_encryption=mode,
        oidc=oidc,
    )


def test_the_audience_is_knatives_group_kind_namespace_name_lower_cased() -> None:
    assert audience(BROKER) == "eventing.knative.dev/broker/shop/default"


def test_disabled_publishes_the_http_address_only() -> None:
    status = Status()
    set_address(status, _config("disabled"), "/shop/default", BROKER)
    assert status.address == Address(name="http", url="http://ingress/shop/default")
    assert status.addresses is None


def test_permissive_publishes_http_as_the_address_and_lists_https_with_its_ca_and_http() -> None:
    status = Status()
    set_address(status, _config("permissive"), "/shop/default", BROKER)
    assert status.address is not None and status.address.url == "http://ingress/shop/default"
    assert [(a.url, a.CACerts) for a in status.addresses or []] == [
        ("https://ingress:8443/shop/default", CA),
        ("http://ingress/shop/default", None),
    ]


def test_strict_publishes_only_the_https_address_with_its_ca() -> None:
    status = Status()
    set_address(status, _config("strict"), "/shop/default", BROKER)
    assert status.address is not None
    assert (status.address.url, status.address.CACerts) == ("https://ingress:8443/shop/default", CA)
    assert [a.url for a in status.addresses or []] == ["https://ingress:8443/shop/default"]


@pytest.mark.parametrize("mode", ["disabled", "permissive", "strict"])
def test_with_oidc_every_address_publishes_the_audience(mode: str) -> None:
    status = Status()
    set_address(status, _config(mode, oidc=True), "/shop/default", BROKER)
    published = [status.address, *(status.addresses or [])]
    assert {a.audience for a in published if a is not None} == {"eventing.knative.dev/broker/shop/default"}


def test_without_oidc_no_audience_is_published() -> None:
    status = Status()
    set_address(status, _config("permissive"), "/shop/default", BROKER)
    assert status.address is not None and status.address.audience is None


def test_a_destination_keeps_its_own_cacerts_and_audience() -> None:
    resolver = Resolver({}, {})
    destination = Destination(uri="https://sub.example", CACerts=CA, audience="my-sub")
    assert resolver.trust(destination, "shop") == (CA, "my-sub")


def test_a_ref_to_a_broker_takes_the_cacerts_and_audience_its_address_publishes() -> None:
    status = Status()
    set_address(status, _config("strict", oidc=True), "/shop/default", BROKER)
    resolver = Resolver(
        {BROKER.key: "https://ingress:8443/shop/default"}, {BROKER.key: BROKER}, None, {BROKER.key: status}
    )
    destination = Destination.model_validate({"ref": {"kind": "Broker", "name": "default"}})
    assert resolver.trust(destination, "shop") == (CA, "eventing.knative.dev/broker/shop/default")
