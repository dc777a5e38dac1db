"""Knative's ``config-kafka-features`` ConfigMap (in the controller's system namespace): the templates that name
Brokers' topics, Channels' topics and Triggers' consumer groups.

- ``brokers.topic.template`` (Knative's default ``knative-broker-{{ .Namespace }}-{{ .Name }}``)
- ``channels.topic.template`` (``messaging-kafka.{{ .Namespace }}.{{ .Name }}``)
- ``triggers.consumergroup.template`` (``knative-trigger-{{ .Namespace }}-{{ .Name }}``)

(also spelled with ``-`` for ``.``, as Knative reads them). A template is Go text/template over the resource's
metadata; keventing renders ``{{ .Namespace }}``, ``{{ .Name }}`` and ``{{ .UID }}`` and refuses anything else,
and a template must name the namespace and the name, or the UID: one that could give two tenants' resources the
same topic or group is refused (logged; the default naming applies). Without a template keventing's own
injective names apply (README, "Topic and consumer group names").

A name is fixed when first used and kept, as Knative keeps a Trigger's group in its status: a Broker or Channel
keeps the topic the topic ledger says keventing created for it, a Trigger the group it was published with, so
changing a template renames only what is created afterwards. When a rendered name is already another
resource's, the resource gets no name (:func:`assign_names` returns None) and is not Ready, saying whose it is.

``dispatcher.rate-limiter``, ``dispatcher.ordered-executor-metrics`` and ``controller.autoscaler`` are Knative's
Java data plane's and KEDA's; keventing logs, once, that an ``enabled`` one is not applied.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from keventing.resources import ConfigMap, Resource, ResourceKey

log = logging.getLogger("keventing.controller.kafkafeatures")

CONFIG_MAP = "config-kafka-features"
BROKER_TOPIC = "brokers.topic.template"
CHANNEL_TOPIC = "channels.topic.template"
TRIGGER_GROUP = "triggers.consumergroup.template"
NOT_APPLIED = ("dispatcher.rate-limiter", "dispatcher.ordered-executor-metrics", "controller.autoscaler")
FIELDS = {"Namespace", "Name", "UID"}
_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")
_FIELD = re.compile(r"\.([A-Za-z]+)")

_logged: set[str] = set()


class TemplateInvalid(ValueError):
    """A name template keventing cannot or will not render; the message says why."""


@dataclass(frozen=True)
class NameTemplate:
    text: str
    parts: tuple[tuple[bool, str], ...]  # (is a field, literal text or field name)

    @classmethod
    def parse(cls, text: str) -> NameTemplate:
        parts: list[tuple[bool, str]] = []
        at = 0
        for match in _ACTION.finditer(text):
            if match.start() > at:
                parts.append((False, text[at : match.start()]))
            action = match.group(1)
            field = _FIELD.fullmatch(action)
            if field is None or field.group(1) not in FIELDS:
                raise TemplateInvalid(
                    f"{{{{ {action} }}}} is not rendered by keventing: use {{{{ .Namespace }}}}, {{{{ .Name }}}} "
                    "or {{ .UID }}"
                )
            parts.append((True, field.group(1)))
            at = match.end()
        if "{{" in text[at:] or "}}" in text[at:]:
            raise TemplateInvalid(f"unbalanced {{{{ }}}} in {text!r}")
        if at < len(text):
            parts.append((False, text[at:]))
        named = {p for is_field, p in parts if is_field}
        if not ({"Namespace", "Name"} <= named or "UID" in named):
            raise TemplateInvalid(
                f"{text!r} must name {{{{ .Namespace }}}} and {{{{ .Name }}}} (or {{{{ .UID }}}}): otherwise resources "
                "of different namespaces could share a name"
            )
        return cls(text, tuple(parts))

    def render(self, resource: Resource) -> str:
        values = {
            "Namespace": resource.namespace,
            "Name": resource.name,
            "UID": resource.metadata.uid or str(resource.key),
        }
        return "".join(values[p] if is_field else p for is_field, p in self.parts)


@dataclass(frozen=True)
class KafkaFeatures:
    broker_topic: NameTemplate | None = None
    channel_topic: NameTemplate | None = None
    trigger_group: NameTemplate | None = None


def _once(message: str) -> None:
    if message not in _logged:
        _logged.add(message)
        log.warning(message)


def kafka_features(resources: Mapping[ResourceKey, Resource], system_namespace: str) -> KafkaFeatures:
    """The templates of the system namespace's config-kafka-features (none without it; a refused one logged)."""
    cm = resources.get(ResourceKey(ConfigMap.KIND, system_namespace, CONFIG_MAP))
    if not isinstance(cm, ConfigMap):
        return KafkaFeatures()
    templates: dict[str, NameTemplate | None] = {}
    for key, field in (
        (BROKER_TOPIC, "broker_topic"),
        (CHANNEL_TOPIC, "channel_topic"),
        (TRIGGER_GROUP, "trigger_group"),
    ):
        text = cm.data.get(key, cm.data.get(key.replace(".", "-")))
        if text is None or not text.strip():
            templates[field] = None
            continue
        try:
            templates[field] = NameTemplate.parse(text.strip())
        except TemplateInvalid as err:
            _once(f"config-kafka-features: {key}: {err}; keventing's default names apply")
            templates[field] = None
    for key in NOT_APPLIED:
        if cm.data.get(key, "").strip().lower() == "enabled":
            _once(
                f"config-kafka-features: {key}: enabled is not applied by keventing (Knative's Java data plane's)"
            )
    return KafkaFeatures(**templates)


def rendered(template: NameTemplate | None, resource: Resource, default: str) -> str:
    """The name ``template`` gives ``resource``, or ``default`` without one."""
    return template.render(resource) if template is not None else default


def assign_names(
    wanted: Iterable[tuple[ResourceKey, str | None, str]], kept: Mapping[ResourceKey, str]
) -> dict[ResourceKey, str | None]:
    """Each resource's name: the one it ``kept`` (first used), else the template's ``rendered`` one, else its
    ``default``; None when that name is another resource's (kept, or rendered or defaulted for one that sorts
    first). ``wanted`` is (key, rendered or None, default)."""
    items = sorted(wanted, key=lambda item: item[0])
    keys = {key for key, _, _ in items}
    taken = {name: key for key, name in kept.items() if key in keys}
    names: dict[ResourceKey, str | None] = {key: kept[key] for key in keys if key in kept}
    for key, rendered, default in items:
        if key in names:
            continue
        name = rendered if rendered is not None else default
        if name in taken:
            names[key] = None
            continue
        taken[name] = key
        names[key] = name
    return names


def owner_of(name: str, names: Mapping[ResourceKey, str | None]) -> ResourceKey | None:
    return next((key for key, n in names.items() if n == name), None)
