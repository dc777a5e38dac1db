"""EventPolicies (authentication-oidc): each policy's subjects, and for every ingress the policies that apply
to its resource, published in the contract (the receiver enforces them) and in the resource's status
(``status.policies`` and the ``EventPoliciesReady`` condition).

A policy applies to the resources of its own namespace its ``spec.to`` names (a ref by kind and name, a
selector by apiVersion/kind and labels; no ``to``: all of them); a Channel's policies apply to its backing
channel, which is what the receiver serves. A ``from`` ref resolves to the sender's OIDC identity, Knative's
``status.auth.serviceAccountName`` of the referenced resource (in Kubernetes mode every Trigger,
Subscription and source keventing sends for has one, :mod:`controller.identities`); in local mode nothing has
one (everything sends with the token command's identity), so such a ref is not resolved and the policy says so.
"""

from __future__ import annotations

from controller.conditions import Conditions
from controller.context import Context, Contribution
from keventing.contract import ContractEntry, IngressPolicy
from keventing.resources import Condition, Resource, ResourceKey, Status
from keventing.resources.eventpolicy import EventPolicy, EventPolicySpecTo, EventPolicyStatus

CONDITION = "EventPoliciesReady"


def reconcile_event_policies(ctx: Context) -> Contribution:
    out = Contribution()
    policies = ctx.of(EventPolicy)
    resolved: dict[ResourceKey, EventPolicyStatus] = {}
    for policy in policies:
        resolved[policy.key] = out.statuses[policy.key] = _policy_status(policy, ctx)
    if not ctx.config.oidc:
        return out  # without sender identity there is nothing to authorize
    for key, entry in ctx.desired.contract.items():
        if entry.ingress is None:
            continue
        resource = ctx.resources.get(ResourceKey.parse(key))
        status = ctx.desired.statuses.get(ResourceKey.parse(key))
        if resource is None or status is None:
            continue
        targets = [resource, *_owners(resource, ctx)]
        applying = [p for p in policies if any(_applies(p, target) for target in targets)]
        ingress_policies = tuple(
            IngressPolicy(name=p.name, subs=tuple(resolved[p.key].from_ or ()), filters=p.spec.filters)
            for p in applying
        )
        out.contract[key] = ContractEntry(
            ingress=entry.ingress.model_copy(update={"policies": ingress_policies or None})
        )
        status = status.model_copy(deep=True)
        status.policies = [{"apiVersion": p.apiVersion, "name": p.name} for p in applying] or None
        status.conditions = [c for c in status.conditions if c.type != CONDITION]
        status.conditions.append(_condition(applying, resolved, ctx))
        out.statuses[resource.key] = status
    return out


def _policy_status(policy: EventPolicy, ctx: Context) -> EventPolicyStatus:
    status = EventPolicyStatus(observedGeneration=policy.metadata.generation)
    conditions = Conditions()
    subs: list[str] = []
    unresolved: list[str] = []
    for sender in policy.spec.from_:
        if sender.sub is not None:
            subs.append(sender.sub)
            continue
        assert sender.ref is not None
        ref = sender.ref
        namespace = ref.namespace or policy.namespace
        key = ResourceKey(ref.kind, namespace, ref.name)
        account = _service_account(ctx.desired.statuses.get(key)) or _service_account(ctx.resources.get(key))
        if account is None:
            unresolved.append(f'{ref.kind} "{ref.name}" in namespace "{namespace}"')
        else:
            subs.append(f"system:serviceaccount:{namespace}:{account}")
    status.from_ = subs
    if unresolved:
        message = (
            f"{', '.join(unresolved)}: no OIDC identity (status.auth.serviceAccountName); in local mode "
            "everything sends with the token command's identity, name its sub instead"
        )
        conditions.false("SubjectsResolved", "SubjectsNotResolved", message)
    else:
        conditions.true("SubjectsResolved")
    status.conditions = conditions.finish(["SubjectsResolved"])
    return status


def _service_account(found: Resource | Status | None) -> str | None:
    """The identity in a status this pass decided (a Trigger's, a Subscription's), or in a resource's."""
    status = found.status if isinstance(found, Resource) else found
    auth = getattr(status, "auth", None)
    account = auth.get("serviceAccountName") if isinstance(auth, dict) else None
    return account if isinstance(account, str) and account else None


def _owners(resource: Resource, ctx: Context) -> list[Resource]:
    """The resources owning ``resource`` (a Channel owns its backing channel)."""
    found = []
    for owner in resource.metadata.ownerReferences:
        parent = ctx.resources.get(ResourceKey(owner.kind, resource.namespace, owner.name))
        if parent is not None:
            found.append(parent)
    return found


def _applies(policy: EventPolicy, resource: Resource) -> bool:
    if policy.namespace != resource.namespace:
        return False
    if not policy.spec.to:
        return True
    return any(_names(to, resource) for to in policy.spec.to)


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _names(to: EventPolicySpecTo, resource: Resource) -> bool:
    if to.ref is not None:
        ref = to.ref
        return (ref.kind, ref.name, _group(ref.apiVersion)) == (
            resource.KIND,
            resource.name,
            _group(resource.apiVersion),
        )
    assert to.selector is not None
    selector = to.selector
    if selector.kind is not None and selector.kind != resource.KIND:
        return False
    if selector.apiVersion is not None and _group(selector.apiVersion) != _group(resource.apiVersion):
        return False
    labels = resource.metadata.labels
    return all(labels.get(k) == v for k, v in selector.matchLabels.items())


def _condition(
    applying: list[EventPolicy], resolved: dict[ResourceKey, EventPolicyStatus], ctx: Context
) -> Condition:
    if not applying:
        mode = ctx.config.default_authorization_mode
        return Condition(
            type=CONDITION,
            status="True",
            reason="DefaultAuthorizationMode",
            message=f"no EventPolicy applies: the default authorization mode {mode} decides",
        )
    not_ready = [p.name for p in applying if not resolved[p.key].ready]
    if not_ready:
        return Condition(
            type=CONDITION,
            status="False",
            reason="EventPoliciesNotReady",
            message=f"EventPolicies not ready (they allow only the subjects they resolved): {', '.join(not_ready)}",
        )
    return Condition(type=CONDITION, status="True")
