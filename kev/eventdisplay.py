"""event-display: the sample sink that prints every event it receives the way Knative's sample does."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TextIO

from keventing import events

_CONTEXT = ("specversion", "type", "source", "subject", "id", "time", "dataschema", "datacontenttype")


def format_event(event: events.Event) -> str:
    """Render ``event`` exactly like the Go SDK's Event.String() that Knative's event_display prints."""
    attrs = event.attributes
    lines = ["☁️  cloudevents.Event", "Context Attributes,"]
    for name in _CONTEXT:
        if name in attrs:
            lines.append(f"  {name}: {attrs[name]}")
    extensions = sorted(k for k in attrs if k not in _CONTEXT)
    if extensions:
        lines.append("Extensions,")
        lines.extend(f"  {name}: {attrs[name]}" for name in extensions)
    if event.data:
        lines.append("Data,")
        lines.append("  " + _format_data(event.data, attrs.get("datacontenttype")))
    return "\n".join(lines) + "\n"


def _format_data(data: bytes, content_type: str | None) -> str:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    text = data.decode("utf-8", errors="replace")
    if media != "application/json":
        return text
    try:
        value = json.loads(data)
    except ValueError:
        return text
    # Go's json.Indent with prefix "  " and indent "  ": every line after the first is indented twice.
    return json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n  ")


Scope = MutableMapping[str, Any]


class EventDisplayApp:
    """An ASGI sink: accepts binary or structured events, prints each, answers 202 (no reply)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] in ("/healthz", "/readyz"):
            await _answer(send, 200, b"ok")
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            event = events.from_http(headers, body)
        except events.InvalidEvent as err:
            await _answer(send, 400, f"invalid CloudEvent: {err}\n".encode())
            return
        self.out.write(format_event(event))
        self.out.flush()
        await _answer(send, 202, b"")


async def _answer(
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]], status: int, body: bytes
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
