"""Knative's ``config-features``: the feature flags of the ConfigMap in the controller's system namespace that
change what the controller does.

- ``cross-namespace-event-links``: a Trigger's ``spec.brokerRef`` may name a Broker in another namespace
  (``enabled``); otherwise such a Trigger is not Ready and says which flag it needs. In Kubernetes mode the
  admission webhook also checks that whoever creates it may ``knsubscribe`` to that Broker
  (:mod:`controller.kubernetes.crossnamespace`).
- ``eventtype-auto-create``: whether ingresses create EventTypes for what they see; the ConfigMap wins over
  ``KEVENTING_EVENTTYPE_AUTO_CREATE``.
- ``authentication-oidc``: addresses publish their audience, senders' tokens are asked for and checked,
  EventPolicies apply. The controller puts the flag on every ingress and leaves destinations without an
  audience when it is off, so the receiver, the dispatcher and the sources runner follow the controller
  (each still needs its side configured: the receiver an issuer, the senders a token source).
- ``default-authorization-mode``: who may send where no EventPolicy applies; on every ingress too.

The ConfigMap wins over the services' environment (``KEVENTING_AUTHENTICATION_OIDC``, …), which is the default.
``transport-encryption`` stays the environment's, because serving HTTPS needs each service's certificate: a
ConfigMap value that differs is logged, once, naming the variable that decides. Values are Knative's
``enabled``/``disabled``/``allowed`` (``allowed`` counts as not enabled, as in Knative); an unknown value is
logged and the flag keeps its default. Pure apart from the log.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from controller.context import ControllerConfig
from keventing.resources import ConfigMap, Resource, ResourceKey

log = logging.getLogger("keventing.controller.features")

CONFIG_MAP = "config-features"
CROSS_NAMESPACE_EVENT_LINKS = "cross-namespace-event-links"
EVENTTYPE_AUTO_CREATE = "eventtype-auto-create"
FLAG_VALUES = ("enabled", "disabled", "allowed")
AUTHENTICATION_OIDC = "authentication-oidc"
DEFAULT_AUTHORIZATION_MODE = "default-authorization-mode"
AUTHORIZATION_MODES = ("allow-same-namespace", "allow-all", "deny-all")
# The flag the services read from their environment only (see the module doc).
TRANSPORT_ENCRYPTION = "transport-encryption"
TRANSPORT_ENCRYPTION_MODES = ("disabled", "permissive", "strict")

_logged: set[str] = set()


def features_key(system_namespace: str) -> ResourceKey:
    return ResourceKey(ConfigMap.KIND, system_namespace, CONFIG_MAP)


def _once(message: str, **extra: object) -> None:
    if message not in _logged:
        _logged.add(message)
        log.warning(message, extra=extra)


def _flag(data: Mapping[str, str], name: str) -> bool | None:
    """True/False for a valid value, None when the key is absent or its value unknown (logged)."""
    value = data.get(name)
    if value is None:
        return None
    value = value.strip().lower()
    if value not in FLAG_VALUES:
        _once(
            f"config-features: {name}: {value!r} is not one of {', '.join(FLAG_VALUES)}; the default applies",
            flag=name,
        )
        return None
    return value == "enabled"


def with_features(resources: Mapping[ResourceKey, Resource], config: ControllerConfig) -> ControllerConfig:
    """``config`` as the system namespace's config-features changes it (unchanged without the ConfigMap)."""
    cm = resources.get(features_key(config.system_namespace))
    if not isinstance(cm, ConfigMap):
        return config
    data = cm.data
    links = _flag(data, CROSS_NAMESPACE_EVENT_LINKS)
    auto_create = _flag(data, EVENTTYPE_AUTO_CREATE)
    oidc = _flag(data, AUTHENTICATION_OIDC)
    mode = data.get(DEFAULT_AUTHORIZATION_MODE, "").strip().lower() or None
    if mode is not None and mode not in AUTHORIZATION_MODES:
        _once(
            f"config-features: {DEFAULT_AUTHORIZATION_MODE}: {mode!r} is not one of "
            f"{', '.join(AUTHORIZATION_MODES)}; the default applies",
            flag=DEFAULT_AUTHORIZATION_MODE,
        )
        mode = None
    wanted = data.get(TRANSPORT_ENCRYPTION, "").strip().lower()
    if wanted and wanted != config.transport_encryption:
        valid = (
            ""
            if wanted in TRANSPORT_ENCRYPTION_MODES
            else f" (not one of {', '.join(TRANSPORT_ENCRYPTION_MODES)})"
        )
        _once(
            f"config-features: {TRANSPORT_ENCRYPTION}: {wanted!r}{valid} is not applied: the services run with "
            f"KEVENTING_TRANSPORT_ENCRYPTION={config.transport_encryption} (set it, or the chart's value, on "
            "every service)",
            flag=TRANSPORT_ENCRYPTION,
        )
    return dataclasses.replace(
        config,
        cross_namespace_event_links=config.cross_namespace_event_links if links is None else links,
        event_type_auto_create=config.event_type_auto_create if auto_create is None else auto_create,
        oidc=config.oidc if oidc is None else oidc,
        default_authorization_mode=config.default_authorization_mode if mode is None else mode,
    )
