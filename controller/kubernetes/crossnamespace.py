"""Knative's cross-namespace event links, admitted: a Trigger whose ``spec.brokerRef`` names a Broker in another
namespace is created (or re-pointed) only by someone who may ``knsubscribe`` to that Broker.

The operator's webhook server serves ``/crossnamespace``; a ``ValidatingWebhookConfiguration`` with a CEL match
condition sends the API server only the Triggers that reference another namespace's Broker and are created or
change their ``brokerRef`` (so the operator's own finalizer patches, and every same-namespace Trigger, never
reach it). Failure policy Fail: when the webhook cannot answer, such a Trigger is not admitted.

For each, the webhook reads ``config-features`` (the flag off: denied, naming the flag) and asks the API server
with a ``SubjectAccessReview`` whether the requesting user (``request.userInfo``: name, groups, uid, extra) may
``knsubscribe`` to ``brokers`` (group ``eventing.knative.dev``) named so in the Broker's namespace — the verb a
Role grants, as in Knative's documentation. Denied: 403 with who, what and where.

The reconciler checks the flag again (controller.features): a Trigger admitted while the flag was on stops
reading the other namespace once it is turned off.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes_asyncio import client as k8s

from controller.features import CONFIG_MAP, CROSS_NAMESPACE_EVENT_LINKS
from controller.kubernetes.api import APPLY_PATCH

log = logging.getLogger("keventing.controller.webhook")

VALIDATE_PATH = "/crossnamespace"
WEBHOOK_NAME = "crossnamespace.webhook.eventing.knative.dev"
VERB = "knsubscribe"
FIELD_MANAGER = "keventing-controller"
# Only Triggers naming another namespace's Broker, on creation or when their brokerRef changes.
MATCH = (
    "has(object.spec) && has(object.spec.brokerRef) && has(object.spec.brokerRef.namespace)"
    " && object.spec.brokerRef.namespace != '' && object.spec.brokerRef.namespace != request.namespace"
    " && (request.operation == 'CREATE' || !has(oldObject.spec) || !has(oldObject.spec.brokerRef)"
    " || oldObject.spec.brokerRef != object.spec.brokerRef)"
)


def validating_configuration(name: str, client_config: dict[str, Any]) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration; ``client_config`` as the mutating one's, pointed at this path."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "clientConfig": client_config,
                "rules": [
                    {
                        "apiGroups": ["eventing.knative.dev"],
                        "apiVersions": ["v1"],
                        "resources": ["triggers"],
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                ],
                "matchConditions": [{"name": "references-another-namespace", "expression": MATCH}],
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 10,
            }
        ],
    }


async def apply_validating_configuration(api: k8s.ApiClient, configuration: dict[str, Any]) -> None:
    await k8s.AdmissionregistrationV1Api(api).patch_validating_webhook_configuration(
        configuration["metadata"]["name"],
        configuration,
        field_manager=FIELD_MANAGER,
        force=True,
        **APPLY_PATCH,
    )


def _answer(uid: str, allowed: bool, message: str = "") -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": message}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


async def _flag_enabled(api: k8s.ApiClient, system_namespace: str) -> bool:
    try:
        cm = await k8s.CoreV1Api(api).read_namespaced_config_map(CONFIG_MAP, system_namespace)
    except k8s.ApiException as err:
        if err.status == 404:
            return False
        raise
    value = (cm.data or {}).get(CROSS_NAMESPACE_EVENT_LINKS, "")
    return value.strip().lower() == "enabled"


async def review(api: k8s.ApiClient, system_namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    """The AdmissionReview answering ``body`` (a Trigger's admission the match condition sent here)."""
    request = body.get("request") or {}
    uid = str(request.get("uid", ""))
    obj = request.get("object") or {}
    ref = (obj.get("spec") or {}).get("brokerRef") or {}
    namespace = str(request.get("namespace") or (obj.get("metadata") or {}).get("namespace") or "")
    target_ns = str(ref.get("namespace") or namespace)
    broker = str(ref.get("name") or (obj.get("spec") or {}).get("broker") or "")
    if not target_ns or target_ns == namespace:
        return _answer(uid, True)
    field = "spec.brokerRef.namespace"
    try:
        enabled = await _flag_enabled(api, system_namespace)
    except k8s.ApiException as err:
        return _answer(uid, False, f"{field}: cannot read config-features to check the flag: {err.reason}")
    if not enabled:
        return _answer(
            uid,
            False,
            f"{field}: the Broker {target_ns}/{broker} is in another namespace; a Trigger may reference it "
            f"only with {CROSS_NAMESPACE_EVENT_LINKS} enabled in the {CONFIG_MAP} ConfigMap of "
            f"{system_namespace}",
        )
    user = request.get("userInfo") or {}
    username = str(user.get("username") or "")
    spec = k8s.V1SubjectAccessReviewSpec(
        user=username,
        groups=user.get("groups") or None,
        uid=user.get("uid") or None,
        extra=user.get("extra") or None,
        resource_attributes=k8s.V1ResourceAttributes(
            namespace=target_ns,
            verb=VERB,
            group="eventing.knative.dev",
            resource="brokers",
            name=broker or None,
        ),
    )
    try:
        answer = await k8s.AuthorizationV1Api(api).create_subject_access_review(
            k8s.V1SubjectAccessReview(spec=spec)
        )
    except k8s.ApiException as err:
        log.error("SubjectAccessReview failed", extra={"status": err.status, "reason": err.reason})
        return _answer(uid, False, f"{field}: cannot check access to {target_ns}: {err.reason}")
    if not answer.status.allowed:
        log.info(
            "cross-namespace Trigger denied",
            extra={"user": username, "namespace": namespace, "broker": f"{target_ns}/{broker}"},
        )
        return _answer(
            uid,
            False,
            f'{field}: user "{username}" may not {VERB} to brokers in namespace "{target_ns}" '
            f"(a Role there granting the {VERB} verb on brokers allows it)",
        )
    return _answer(uid, True)
