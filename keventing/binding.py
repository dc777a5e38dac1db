"""SinkBinding's runtime contract: the environment a program gets to know where to send its events.

``K_SINK`` is the resolved sink URL; ``K_CE_OVERRIDES`` (only when there are overrides) is the JSON of
Knative's CloudEventOverrides, ``{"extensions": {...}}``. A ContainerSource's process and ``kev run
--binding`` get the same variables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

K_SINK = "K_SINK"
K_CE_OVERRIDES = "K_CE_OVERRIDES"

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def binding_env(sink: str, ce_overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {K_SINK: sink}
    if ce_overrides:
        env[K_CE_OVERRIDES] = orjson.dumps({"extensions": dict(ce_overrides)}).decode()
    return env


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion in command, args and env values: ``$$`` escapes, unknown names stay."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REFERENCE.sub(replace, value)
