"""OIDC identities in Kubernetes mode: each Trigger and Subscription gets a ServiceAccount named as Knative
names it, in its status and its egress; EventPolicies resolve a ``from.ref`` through it; the dispatcher's
TokenRequest tokens are cached per identity and audience, renewed before they expire, and a delivery without
one fails instead of going out unauthenticated."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest

from controller.context import ControllerConfig
from controller.identities import DISABLED_REASON, identity_failed
from controller.kubernetes.serviceaccounts import service_account_object
from controller.reconciler import reconcile
from dispatcher.identity import IdentityPost
from dispatcher.transport import TransportError
from keventing.contract import ServiceAccount
from keventing.naming import oidc_service_account
from keventing.resources import ResourceKey, parse_resource
from keventing.serviceaccounttokens import ServiceAccountTokenSource
from keventing.tokens import TokenCache, TokenUnavailable
from unit.test_dispatch import FakePost

NS = "shop"


def _doc(kind: str, name: str, spec: dict[str, Any] | None = None, group: str = "eventing") -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": f"{group}.knative.dev/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
    }
    if spec is not None:
        document["spec"] = spec
    return document


BROKER = _doc("Broker", "default")
TRIGGER = _doc("Trigger", "display", {"broker": "default", "subscriber": {"uri": "http://display.shop/"}})
CHANNEL = _doc("InMemoryChannel", "orders", group="messaging")
SUBSCRIPTION = _doc(
    "Subscription",
    "audit",
    {
        "channel": {"apiVersion": "messaging.knative.dev/v1", "kind": "InMemoryChannel", "name": "orders"},
        "subscriber": {"uri": "http://audit.shop/"},
    },
    group="messaging",
)


def _reconcile(*documents: dict[str, Any], **config: Any) -> Any:
    return reconcile([parse_resource(d) for d in documents], ControllerConfig(**config))


def test_knative_names_the_service_account_after_the_resource_group_and_kind() -> None:
    assert oidc_service_account("eventing.knative.dev/v1", "Trigger", "display") == (
        "displayoidc-eventing.knative.dev-trigger"
    )
    long_names = [oidc_service_account("eventing.knative.dev/v1", "Trigger", n * 50) for n in "ab"]
    assert all(len(name) <= 63 for name in long_names) and long_names[0] != long_names[1]
    assert long_names[0].startswith("a" * 30)


def test_a_trigger_and_a_subscription_get_their_identity_in_status_and_egress() -> None:
    desired = _reconcile(BROKER, TRIGGER, CHANNEL, SUBSCRIPTION, kubernetes=True, oidc=True)
    for kind, name, group in (("Trigger", "display", "eventing"), ("Subscription", "audit", "messaging")):
        account = oidc_service_account(f"{group}.knative.dev/v1", kind, name)
        status = desired.statuses[ResourceKey(kind, NS, name)]
        assert status.auth == {"serviceAccountName": account}
        created = status.condition("OIDCIdentityCreated")
        assert created is not None and created.status == "True" and created.reason is None
        assert status.ready
        egress = desired.contract[f"{kind}/{NS}/{name}"].egress
        assert egress is not None and egress.identity == ServiceAccount(namespace=NS, name=account)


def test_with_oidc_disabled_there_is_no_identity_and_the_condition_says_why() -> None:
    desired = _reconcile(BROKER, TRIGGER, kubernetes=True, oidc=False)
    status = desired.statuses[ResourceKey("Trigger", NS, "display")]
    created = status.condition("OIDCIdentityCreated")
    assert created is not None and created.status == "True" and created.reason == DISABLED_REASON
    assert status.auth is None and status.ready
    assert desired.contract[f"Trigger/{NS}/display"].egress.identity is None


def test_local_mode_has_no_per_resource_identity() -> None:
    desired = _reconcile(BROKER, TRIGGER, oidc=True)
    status = desired.statuses[ResourceKey("Trigger", NS, "display")]
    assert status.condition("OIDCIdentityCreated") is None and status.auth is None


def test_an_event_policy_from_a_trigger_allows_that_triggers_service_account() -> None:
    policy = {
        "apiVersion": "eventing.knative.dev/v1alpha1",
        "kind": "EventPolicy",
        "metadata": {"name": "from-display", "namespace": NS},
        "spec": {
            "from": [{"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "name": "display"}}]
        },
    }
    desired = _reconcile(BROKER, TRIGGER, policy, kubernetes=True, oidc=True)
    account = oidc_service_account("eventing.knative.dev/v1", "Trigger", "display")
    status = desired.statuses[ResourceKey("EventPolicy", NS, "from-display")]
    assert status.from_ == [f"system:serviceaccount:{NS}:{account}"] and status.ready
    [applied] = desired.contract[f"Broker/{NS}/default"].ingress.policies
    assert applied.subs == (f"system:serviceaccount:{NS}:{account}",)


def test_the_service_account_is_controlled_by_its_resource() -> None:
    account = service_account_object(ResourceKey("Trigger", NS, "display"), "uid-display", "sa")
    [owner] = account.metadata.owner_references
    assert (owner.api_version, owner.kind, owner.name, owner.uid, owner.controller) == (
        "eventing.knative.dev/v1", "Trigger", "display", "uid-display", True
    )  # fmt: skip
    assert account.metadata.namespace == NS and account.metadata.name == "sa"


def test_a_service_account_that_cannot_be_created_makes_the_resource_not_ready() -> None:
    desired = _reconcile(BROKER, TRIGGER, kubernetes=True, oidc=True)
    failed = identity_failed(desired.statuses[ResourceKey("Trigger", NS, "display")], "forbidden")
    created = failed.condition("OIDCIdentityCreated")
    assert created is not None and created.status == "False" and created.message == "forbidden"
    assert not failed.ready


def _jwt(lifetime: float, **claims: Any) -> str:
    return jwt.encode({**claims, "exp": int(time.time() + lifetime)}, "k" * 32, algorithm="HS256")


async def test_tokens_are_cached_per_key_and_fetched_once_for_concurrent_callers() -> None:
    fetched: list[tuple[str, str]] = []

    async def fetch(key: tuple[str, str]) -> str:
        fetched.append(key)
        await asyncio.sleep(0.01)
        return _jwt(600, sub=key[0], aud=key[1])

    cache: TokenCache[tuple[str, str]] = TokenCache(fetch)
    first = await asyncio.gather(*(cache.get(("a", "x")) for _ in range(5)))
    assert len(set(first)) == 1
    other = await cache.get(("b", "x"))
    assert jwt.decode(other, options={"verify_signature": False})["sub"] == "b"
    assert await cache.get(("a", "x")) == first[0]
    assert fetched == [("a", "x"), ("b", "x")]


async def test_a_token_within_a_minute_of_its_expiry_is_fetched_again() -> None:
    fetched = 0

    async def fetch(key: str) -> str:
        nonlocal fetched
        fetched += 1
        return _jwt(30, n=fetched)

    cache: TokenCache[str] = TokenCache(fetch)
    assert await cache.get("a") != await cache.get("a")
    assert fetched == 2


async def test_a_sender_without_identity_and_without_token_command_gets_no_token() -> None:
    with pytest.raises(TokenUnavailable, match="KEVENTING_OIDC_TOKEN_COMMAND"):
        await ServiceAccountTokenSource().token("aud")


class _Tokens:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.asked: list[tuple[str, ServiceAccount | None]] = []

    async def token(self, audience: str, identity: ServiceAccount | None = None) -> str:
        self.asked.append((audience, identity))
        if self.fail:
            raise TokenUnavailable("TokenRequest failed: 403 Forbidden")
        return "the.token.jwt"


async def test_an_identity_post_sends_the_identitys_token_for_the_audience() -> None:
    inner, tokens, identity = FakePost({}), _Tokens(), ServiceAccount(namespace=NS, name="sa")
    post = IdentityPost(inner, tokens, identity)
    await post.post("http://x/", {"ce-id": "1"}, b"", 1.0, audience="aud")
    await post.post("http://y/", {"ce-id": "2"}, b"", 1.0)
    assert tokens.asked == [("aud", identity)]
    [(_, with_token, _, _), (_, without, _, _)] = inner.requests
    assert with_token["authorization"] == "Bearer the.token.jwt" and "authorization" not in without


async def test_without_a_token_nothing_is_sent_and_the_attempt_fails_with_why() -> None:
    inner = FakePost({})
    post = IdentityPost(inner, _Tokens(fail=True), ServiceAccount(namespace=NS, name="sa"))
    with pytest.raises(TransportError, match=r"ServiceAccount shop/sa for audience 'aud'.*403"):
        await post.post("http://x/", {}, b"", 1.0, audience="aud")
    assert inner.requests == []


PING = _doc(
    "PingSource", "tick", {"sink": {"uri": "http://display.shop/", "audience": "display"}}, group="sources"
)
KAFKA_SOURCE = {
    "apiVersion": "sources.knative.dev/v1beta1",
    "kind": "KafkaSource",
    "metadata": {"name": "orders", "namespace": NS, "uid": "uid-orders"},
    "spec": {
        "bootstrapServers": ["127.0.0.1:9092"],
        "topics": ["orders"],
        "sink": {"uri": "http://display.shop/"},
    },
}


def test_sources_keventing_sends_for_get_their_identity_too() -> None:
    desired = _reconcile(
        PING, KAFKA_SOURCE, kubernetes=True, oidc=True, kafka_bootstrap_servers="127.0.0.1:9092"
    )
    ping_account = oidc_service_account("sources.knative.dev/v1", "PingSource", "tick")
    assert ping_account == "tickoidc-sources.knative.dev-pingsource"
    ping = desired.statuses[ResourceKey("PingSource", NS, "tick")]
    assert ping.auth == {"serviceAccountName": ping_account} and ping.ready
    created = ping.condition("OIDCIdentityCreated")
    assert created is not None and created.status == "True"
    source = desired.contract[f"PingSource/{NS}/tick"].source
    assert source is not None and source.identity == ServiceAccount(namespace=NS, name=ping_account)
    kafka_account = oidc_service_account("sources.knative.dev/v1beta1", "KafkaSource", "orders")
    egress = desired.contract[f"KafkaSource/{NS}/orders"].egress
    assert egress is not None and egress.identity == ServiceAccount(namespace=NS, name=kafka_account)


def test_sources_without_oidc_have_no_identity_and_say_why() -> None:
    desired = _reconcile(PING, kubernetes=True, oidc=False)
    ping = desired.statuses[ResourceKey("PingSource", NS, "tick")]
    created = ping.condition("OIDCIdentityCreated")
    assert created is not None and created.reason == DISABLED_REASON and ping.auth is None
    assert desired.contract[f"PingSource/{NS}/tick"].source.identity is None
