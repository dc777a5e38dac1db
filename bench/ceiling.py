"""The HTTP ceiling: the receiver's server stack (uvicorn, uvloop, httptools, the same worker count) with a
handler that reads the request and answers 202 without Kafka, on the same direct (non-ASGI) path as the
receiver's ingresses.

    KEVENTING_RECEIVER_PORT=9100 KEVENTING_RECEIVER_WORKERS=2 python -m bench.ceiling

It reads the receiver's settings and serves with ``receiver.main.uvicorn_options``: whatever the receiver is
configured and served with, so is this.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

from receiver.ingress import ACCEPTED
from receiver.main import uvicorn_options
from receiver.protocol import DirectHandler, Reply
from receiver.settings import ReceiverSettings

Message = MutableMapping[str, Any]

_START = {"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]}
_BODY = {"type": "http.response.body", "body": b""}


class Ceiling:
    """Answers 202 to every POST the way the receiver answers its ingresses: on the direct path."""

    def __init__(self, settings: ReceiverSettings) -> None:
        self.max_event_bytes = settings.max_event_bytes
        self.body_timeout_seconds = settings.body_timeout_seconds

    def direct_route(self, path: str, scheme: str) -> DirectHandler:
        return self.accept

    def accept(self, headers: dict[str, str], body: bytes, reply: Reply) -> None:
        reply(ACCEPTED)

    async def __call__(
        self,
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send(_START)
        await send(_BODY)


def create_app() -> Ceiling:
    return Ceiling(ReceiverSettings())


def main() -> None:
    settings = ReceiverSettings()
    uvicorn.run("bench.ceiling:create_app", factory=True, lifespan="off", **uvicorn_options(settings))


if __name__ == "__main__":
    main()
