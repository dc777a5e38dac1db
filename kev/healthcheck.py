"""The container image's HEALTHCHECK: ``python -m kev.healthcheck`` probes the running service's /healthz.

One image runs every service and each listens on its own port, so the probe reads PID 1's command line
(``kev receiver``, ``kev event-display --port 8081``...) and takes the port from that service's settings
(the same environment variables the service read) or from event-display's ``--port``. A container running
any other command (``kev get brokers``) has nothing to probe and counts as healthy.

``python -m kev.healthcheck URL`` probes URL instead (docker-compose.yml probes each service's /readyz so):
an argument without spaces, because podman's Docker API splits a ``python -c "..."`` test on whitespace.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["main", "probe_port"]

_SERVICES = ("receiver", "dispatcher", "controller", "sources")
_EVENT_DISPLAY_PORT = 8081  # kev event-display's --port default


def probe_port(argv: Sequence[str], env: Mapping[str, str]) -> int | None:
    """The port the service started by ``argv`` (PID 1's command line) listens on; None if not a service."""
    args = list(argv)
    # ["/opt/keventing/bin/python", "/opt/keventing/bin/kev", "receiver"] or ["kev", "receiver"]
    while args and Path(args[0]).name != "kev":
        args.pop(0)
    if len(args) < 2:
        return None
    command, options = args[1], args[2:]
    if command in _SERVICES:
        return _settings_port(command, env)
    if command == "event-display":
        for i, option in enumerate(options):
            if option in ("--port", "-p") and i + 1 < len(options):
                return int(options[i + 1])
            if option.startswith("--port="):
                return int(option.split("=", 1)[1])
        return _EVENT_DISPLAY_PORT
    return None


def _settings_port(service: str, env: Mapping[str, str]) -> int:
    from controller.settings import ControllerSettings
    from dispatcher.settings import DispatcherSettings
    from keventing.settings import CommonSettings
    from receiver.settings import ReceiverSettings
    from sources.settings import SourcesSettings

    classes: dict[str, type[CommonSettings]] = {
        "receiver": ReceiverSettings,
        "dispatcher": DispatcherSettings,
        "controller": ControllerSettings,
        "sources": SourcesSettings,
    }
    field = classes[service].model_fields["http_port"]
    value = env.get(str(field.alias)) if field.alias else None
    return int(value) if value else int(field.default)


def main(args: Sequence[str] | None = None) -> int:
    import os

    args = sys.argv[1:] if args is None else args
    if args:
        url = args[0]
    else:
        argv = Path("/proc/1/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
        port = probe_port(argv, os.environ)
        if port is None:
            return 0
        url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            status = response.status
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    print(f"{url}: {status}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
