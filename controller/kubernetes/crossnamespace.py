"""Knative's cross-namespace event links, admitted: a Trigger whose ``spec.brokerRef`` names a Broker in another
namespace, or a Subscription whose ``spec.channel`` names a channel in another, is created (or re-pointed) only
by someone who may ``knsubscribe`` to that Broker or channel.

The operator's webhook server serves ``/crossnamespace``; a ``ValidatingWebhookConfiguration`` with CEL match
conditions sends the API server only the Triggers and Subscriptions that reference another namespace and are
created or change that reference (so the operator's own finalizer patches, and everything within one namespace,
never reach it). Failure policy Fail: when the webhook cannot answer, such a resource is not admitted.

For each, the webhook reads ``config-features`` (the flag off: denied, naming the flag) and asks the API server
with a ``SubjectAccessReview`` whether the requesting user (``request.userInfo``: name, groups, uid, extra) may
``knsubscribe`` to the target (``brokers`` in ``eventing.knative.dev``; ``channels``, ``kafkachannels`` or
``inmemorychannels`` in ``messaging.knative.dev``) named so in its namespace — the verb a Role grants, as in
Knative's documentation. Denied: 403 with who, what and where.

The reconciler checks the flag again (controller.features): a resource admitted while the flag was on stops
reading the other namespace once it is turned off.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes_asyncio import client as k8s

from controller.features import CONFIG_MAP, CROSS_NAMESPACE_EVENT_LINKS

log = logging.getLogger("keventing.controller.webhook")

VALIDATE_PATH = "/crossnamespace"
WEBHOOK_NAME = "crossnamespace.webhook.eventing.knative.dev"
SUBSCRIPTIONS_WEBHOOK_NAME = "crossnamespace.webhook.messaging.knative.dev"
VERB = "knsubscribe"
# The channel kinds a Subscription may name, as the resources a Role grants knsubscribe on.
CHANNEL_RESOURCES = {
    "Channel": "channels",
    "KafkaChannel": "kafkachannels",
    "InMemoryChannel": "inmemorychannels",
}


def _match(field: str) -> str:
    """Only objects whose ``spec.<field>`` names another namespace, on creation or when that reference changes."""
    ref = f"object.spec.{field}"
    return (
        f"has(object.spec) && has({ref}) && has({ref}.namespace) && {ref}.namespace != ''"
        f" && {ref}.namespace != request.namespace && (request.operation == 'CREATE'"
        f" || !has(oldObject.spec) || !has(oldObject.spec.{field}) || oldObject.spec.{field} != {ref})"
    )


def _webhook(name: str, client_config: dict[str, Any], group: str, plural: str, field: str) -> dict[str, Any]:
    return {
        "name": name,
        "clientConfig": client_config,
        "rules": [
            {
                "apiGroups": [group],
                "apiVersions": ["v1"],
                "resources": [plural],
                "operations": ["CREATE", "UPDATE"],
                "scope": "Namespaced",
            }
        ],
        "matchConditions": [{"name": "references-another-namespace", "expression": _match(field)}],
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 10,
    }


def validating_configuration(name: str, client_config: dict[str, Any]) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration; ``client_config`` as the mutating one's, pointed at this path."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            _webhook(WEBHOOK_NAME, client_config, "eventing.knative.dev", "triggers", "brokerRef"),
            _webhook(
                SUBSCRIPTIONS_WEBHOOK_NAME, client_config, "messaging.knative.dev", "subscriptions", "channel"
            ),
        ],
    }


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
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Subscription":
        ref = spec.get("channel") or {}
        kind = str(ref.get("kind") or "")
        group, resource, field = (
            "messaging.knative.dev",
            CHANNEL_RESOURCES.get(kind, ""),
            "spec.channel.namespace",
        )
        target = str(ref.get("name") or "")
        if not resource:
            return _answer(uid, False, f"spec.channel.kind: {kind!r} is not a channel keventing serves")
    else:
        ref = spec.get("brokerRef") or {}
        group, resource, field = "eventing.knative.dev", "brokers", "spec.brokerRef.namespace"
        target = str(ref.get("name") or spec.get("broker") or "")
    namespace = str(request.get("namespace") or (obj.get("metadata") or {}).get("namespace") or "")
    target_ns = str(ref.get("namespace") or namespace)
    if not target_ns or target_ns == namespace:
        return _answer(uid, True)
    what = f"the {'Broker' if resource == 'brokers' else ref.get('kind')} {target_ns}/{target}"
    try:
        enabled = await _flag_enabled(api, system_namespace)
    except k8s.ApiException as err:
        return _answer(uid, False, f"{field}: cannot read config-features to check the flag: {err.reason}")
    if not enabled:
        return _answer(
            uid,
            False,
            f"{field}: {what} is in another namespace; a {obj.get('kind') or 'Trigger'} may reference it "
            f"only with {CROSS_NAMESPACE_EVENT_LINKS} enabled in the {CONFIG_MAP} ConfigMap of "
            f"{system_namespace}",
        )
    user = request.get("userInfo") or {}
    username = str(user.get("username") or "")
    review_spec = k8s.V1SubjectAccessReviewSpec(
        user=username,
        groups=user.get("groups") or None,
        uid=user.get("uid") or None,
        extra=user.get("extra") or None,
        resource_attributes=k8s.V1ResourceAttributes(
            namespace=target_ns, verb=VERB, group=group, resource=resource, name=target or None
        ),
    )
    try:
        answer = await k8s.AuthorizationV1Api(api).create_subject_access_review(
            k8s.V1SubjectAccessReview(spec=review_spec)
        )
    except k8s.ApiException as err:
        log.error("SubjectAccessReview failed", extra={"status": err.status, "reason": err.reason})
        return _answer(uid, False, f"{field}: cannot check access to {target_ns}: {err.reason}")
    if not answer.status.allowed:
        log.info(
            "cross-namespace reference denied",
            extra={"user": username, "namespace": namespace, "target": f"{target_ns}/{target}"},
        )
        return _answer(
            uid,
            False,
            f'{field}: user "{username}" may not {VERB} to {resource} in namespace "{target_ns}" '
            f"(a Role there granting the {VERB} verb on {resource} allows it)",
        )
    return _answer(uid, True)
