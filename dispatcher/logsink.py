"""The ``log:`` destination: an IntegrationSink's events written to the dispatcher's log instead of POSTed.

``log:<namespace>/<name>?level=INFO&headers=true&body=true&multiline=false&logger=…&marker=…`` (made by the
controller from the sink's ``spec.log``). :class:`LoggingPost` sits in front of the HTTP transport: a
``log:`` URL never reaches the network, every other URL goes on unchanged. Each event is one structured log
record (logger ``keventing.integrationsink``) with the sink, the event's attributes when ``headers``, and
its data when ``body`` (text, or base64 when it is not UTF-8); it answers 202 once the record is written.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from dispatcher.transport import Post, Response
from keventing import events

log = logging.getLogger("keventing.integrationsink")

LEVELS = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
          "ERROR": logging.ERROR, "OFF": None}  # fmt: skip
# The most of an event's data one log record carries.
MAX_LOGGED_DATA = 64 * 1024


@dataclass(frozen=True)
class LogTarget:
    sink: str
    level: int | None
    headers: bool
    body: bool
    multiline: bool
    logger: str | None
    marker: str | None


def parse_log_url(url: str) -> LogTarget:
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return LogTarget(
        sink=unquote(parts.path),
        level=LEVELS.get(query.get("level", "INFO").upper(), logging.INFO),
        headers=query.get("headers") == "true",
        body=query.get("body", "true") == "true",
        multiline=query.get("multiline") == "true",
        logger=query.get("logger"),
        marker=query.get("marker"),
    )


class LoggingPost:
    """A ``Post`` that logs what is sent to ``log:`` URLs and hands every other URL to ``inner``."""

    def __init__(self, inner: Post) -> None:
        self.inner = inner
        self._targets: dict[str, LogTarget] = {}  # parsed once per URL, not per event

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float | None,
        ca_certs: str | None = None,
        audience: str | None = None,
    ) -> Response:
        if not url.startswith("log:"):
            return await self.inner.post(url, headers, body, timeout, ca_certs, audience)
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = parse_log_url(url)
        if target.level is None:
            return Response(202)
        try:
            event = events.from_http({k.lower(): v for k, v in headers.items()}, body)
        except events.InvalidEvent as err:
            return Response(400, body=f"not a CloudEvent: {err}".encode())
        extra: dict[str, object] = {"sink": target.sink, "event_id": event.attributes.get("id")}
        if target.logger:
            extra["logger_name"] = target.logger
        if target.marker:
            extra["marker"] = target.marker
        if target.headers:
            extra["attributes"] = dict(event.attributes)
        if target.body and event.data is not None:
            data = event.data[:MAX_LOGGED_DATA]
            try:
                extra["data"] = data.decode("utf-8")
            except UnicodeDecodeError:
                extra["data_base64"] = base64.b64encode(data).decode()
        message = "event"
        if target.multiline:
            message = "event\n" + "\n".join(f"{k}: {v}" for k, v in extra.items())
        log.log(target.level, message, extra=extra)
        return Response(202)
