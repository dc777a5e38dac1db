"""The HTTP ceiling: the receiver's server stack (uvicorn, uvloop, httptools, the same worker count) with a
handler that reads the request and answers 202 without Kafka.

    KEVENTING_RECEIVER_PORT=9100 KEVENTING_RECEIVER_WORKERS=2 python -m bench.ceiling

It reads the receiver's settings and serves with ``receiver.main.uvicorn_options``: whatever the receiver is
configured and served with, so is this.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

from receiver.main import uvicorn_options
from receiver.settings import ReceiverSettings

Message = MutableMapping[str, Any]

_START = {"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]}
_BODY = {"type": "http.response.body", "body": b""}


async def accept(
    scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send(_START)
    await send(_BODY)


def create_app() -> Callable[..., Awaitable[None]]:
    return accept


def main() -> None:
    settings = ReceiverSettings()
    uvicorn.run("bench.ceiling:create_app", factory=True, lifespan="off", **uvicorn_options(settings))


if __name__ == "__main__":
    main()
