"""A long-running loop that fails is run again after its failure was handled; cancellation ends it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from keventing import restarting as module
from keventing.restarting import restarting


async def test_a_failing_loop_is_restarted_after_on_failure_until_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(module, "RESTART_DELAY", 0)
    calls: list[str] = []
    stop = asyncio.Event()

    async def run() -> None:
        calls.append("run")
        if len(calls) > 4:
            stop.set()
            await asyncio.Event().wait()  # runs until cancelled
        raise ConnectionError("broker went away")

    async def on_failure() -> None:
        calls.append("failed")

    task = asyncio.create_task(
        restarting(run, logging.getLogger("test"), "loop failed", on_failure=on_failure)
    )
    await asyncio.wait_for(stop.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == ["run", "failed", "run", "failed", "run"]
