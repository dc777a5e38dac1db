"""EventPolicies: which apply to which resource (controller), and what the receiver decides for a sender."""

from __future__ import annotations

from typing import Any

import pytest

from controller.context import ControllerConfig
from controller.reconciler import reconcile
from keventing.contract import Ingress, IngressPolicy
from keventing.resources import ResourceInvalid, parse_resource
from receiver.authorization import Authorizer, subject_matches


def _broker(name: str, ns: str = "shop", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
            "metadata": {"name": name, "namespace": ns, "labels": labels}}  # fmt: skip


def _policy(name: str, spec: dict[str, Any], ns: str = "shop") -> dict[str, Any]:
    return {"apiVersion": "eventing.knative.dev/v1alpha1", "kind": "EventPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}  # fmt: skip


SHOP_APP = {"from": [{"sub": "system:serviceaccount:shop:app"}]}


def _applied(*documents: dict[str, Any], oidc: bool = True) -> dict[str, tuple[str, ...] | None]:
    desired = reconcile([parse_resource(d) for d in documents], ControllerConfig(oidc=oidc))
    return {
        key: tuple(p.name for p in entry.ingress.policies) if entry.ingress.policies is not None else None
        for key, entry in desired.contract.items()
        if entry.ingress is not None
    }


def test_a_policy_without_to_applies_to_every_resource_of_its_namespace_only() -> None:
    applied = _applied(_broker("a"), _broker("b"), _broker("c", ns="other"), _policy("all", SHOP_APP))
    assert applied == {"Broker/shop/a": ("all",), "Broker/shop/b": ("all",), "Broker/other/c": None}


def test_to_names_resources_by_ref_or_by_selector() -> None:
    by_ref = {
        **SHOP_APP,
        "to": [{"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "a"}}],
    }
    by_label = {**SHOP_APP, "to": [{"selector": {"kind": "Broker", "matchLabels": {"tier": "gold"}}}]}
    applied = _applied(
        _broker("a"),
        _broker("b", tier="gold"),
        _broker("c"),
        _policy("ref", by_ref),
        _policy("label", by_label),
    )
    assert applied == {"Broker/shop/a": ("ref",), "Broker/shop/b": ("label",), "Broker/shop/c": None}


def test_without_oidc_no_policy_is_published() -> None:
    assert _applied(_broker("a"), _policy("all", SHOP_APP), oidc=False) == {"Broker/shop/a": None}


def test_the_resource_status_lists_its_policies() -> None:
    desired = reconcile(
        [parse_resource(_broker("a")), parse_resource(_policy("p", SHOP_APP))], ControllerConfig(oidc=True)
    )
    status = next(s for k, s in desired.statuses.items() if k.kind == "Broker")
    assert status.policies == [{"apiVersion": "eventing.knative.dev/v1alpha1", "name": "p"}]
    condition = status.condition("EventPoliciesReady")
    assert condition is not None and condition.status == "True"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"from": []}, "spec.from"),
        ({"from": [{"sub": "a*b"}]}, "spec.from[0].sub"),
        ({"from": [{"sub": "x", "ref": {"apiVersion": "v1", "kind": "K", "name": "n"}}]}, "spec.from[0]"),
        ({**SHOP_APP, "to": [{}]}, "spec.to[0]"),
    ],
)
def test_invalid_policies_are_refused_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ResourceInvalid) as caught:
        parse_resource(_policy("bad", spec))
    assert caught.value.field == field


def test_a_trailing_star_matches_any_rest_of_the_subject() -> None:
    assert subject_matches("system:serviceaccount:shop:*", "system:serviceaccount:shop:app")
    assert not subject_matches("system:serviceaccount:shop:*", "system:serviceaccount:shopping:app")
    assert not subject_matches("system:serviceaccount:shop:app", "system:serviceaccount:shop:app2")


def _ingress(policies: tuple[IngressPolicy, ...] | None) -> Ingress:
    return Ingress(id="Broker/shop/a", kind="Broker", namespace="shop", name="a", path="/shop/a", topic="t",
                   policies=policies)  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "subject", "allowed"),
    [
        ("allow-same-namespace", "system:serviceaccount:shop:app", True),
        ("allow-same-namespace", "system:serviceaccount:other:app", False),
        ("allow-same-namespace", "https://accounts.example/user", False),
        ("allow-all", "anyone", True),
        ("deny-all", "system:serviceaccount:shop:app", False),
    ],
)
def test_the_default_mode_decides_when_no_policy_applies(mode: str, subject: str, allowed: bool) -> None:
    decision = Authorizer(mode).decide(_ingress(None), subject)
    assert (decision.refusal is None) is allowed


def test_a_policy_with_filters_lets_its_senders_send_only_matching_events() -> None:
    policy = IngressPolicy(
        name="p", subs=("system:serviceaccount:shop:*",), filters=[{"prefix": {"type": "order."}}]
    )
    authorizer = Authorizer("deny-all")
    decision = authorizer.decide(_ingress((policy,)), "system:serviceaccount:shop:app")
    assert decision.refusal is None and decision.check is not None
    assert decision.check({"type": "order.created"}) is None
    assert "does not match" in (decision.check({"type": "user.deleted"}) or "")
    refused = authorizer.decide(_ingress((policy,)), "system:serviceaccount:other:app")
    assert refused.refusal is not None and "EventPolicies (p)" in refused.refusal
