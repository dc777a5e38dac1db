"""keventing.ops.together: a service's main work and its ops server, stopped together and completely."""

from __future__ import annotations

import asyncio

import pytest

from keventing.ops import together


async def _serve_until_cancelled() -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        raise  # done at once, as the ops server is


async def test_a_cancellation_waits_for_every_cleanup_to_finish() -> None:
    cleaned: list[str] = []

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.2)  # stopping consumers and producers takes a while
            cleaned.append("work")

    task = asyncio.ensure_future(together(work(), _serve_until_cancelled()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # asyncio.gather returned as soon as the server was cancelled, with the work's cleanup still sleeping.
    assert cleaned == ["work"]


async def test_one_failure_is_raised_as_itself_and_stops_the_other() -> None:
    stopped = asyncio.Event()

    async def server() -> None:
        raise OSError("could not serve on 127.0.0.1:1 (is the port in use?)")

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    with pytest.raises(OSError, match="is the port in use"):
        await together(work(), server())
    assert stopped.is_set()
