"""OIDC identities (Knative's authentication-oidc in Kubernetes mode): each Trigger and Subscription sends
with the tokens of a ServiceAccount of its own, named as Knative names it, which the operator creates owned
by the resource (``controller.kubernetes.serviceaccounts``). Its name goes to ``status.auth`` (EventPolicies'
``from.ref`` resolve through it) and to the egress (the dispatcher requests tokens for it).

Local mode has no per-resource identity (the dispatcher's token command decides) and no such condition.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.conditions import READY, Conditions
from controller.context import ControllerConfig
from keventing import naming
from keventing.contract import ServiceAccount
from keventing.resources import Resource, Status

CONDITION = "OIDCIdentityCreated"
# Knative's reason while authentication-oidc is off: the condition is True so the resource stays Ready.
DISABLED_REASON = "authentication-oidc feature disabled"


@dataclass(frozen=True)
class OIDCIdentity:
    """What a resource's status and egress carry of its identity; ``account`` None: none (OIDC is off)."""

    account: ServiceAccount | None

    @property
    def auth(self) -> dict[str, str] | None:
        return {"serviceAccountName": self.account.name} if self.account is not None else None


def oidc_identity(
    resource: Resource, config: ControllerConfig, conditions: Conditions
) -> OIDCIdentity | None:
    """Set the OIDCIdentityCreated condition and say which identity ``resource`` has; None in local mode."""
    if not config.kubernetes:
        return None
    if not config.oidc:
        conditions.true(CONDITION, DISABLED_REASON)
        return OIDCIdentity(None)
    conditions.true(CONDITION)
    name = naming.oidc_service_account(resource.apiVersion, resource.KIND, resource.name)
    return OIDCIdentity(ServiceAccount(namespace=resource.namespace, name=name))


def identity_failed(status: Status, message: str) -> Status:
    """``status`` with OIDCIdentityCreated False (the operator could not create the account), and Ready."""
    reason = "UnableToCreateServiceAccount"
    conditions = []
    for condition in status.conditions:
        if condition.type == CONDITION or (condition.type == READY and condition.status == "True"):
            condition = condition.model_copy(update={"status": "False", "reason": reason, "message": message})
        conditions.append(condition)
    return status.model_copy(update={"conditions": conditions})
