"""A deletion's finalizer is released after a reconcile pass that succeeded, not after one that failed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from controller.driver import Driver


def scripted(driver: Driver, outcomes: Iterator[bool]) -> None:
    """Passes that succeed or fail as ``outcomes`` says; a failed one asks for another, as the real one does."""

    async def run_pass() -> bool:
        await asyncio.sleep(0.01)
        succeeded = next(outcomes)
        if not succeeded:
            driver._changed.set()
        return succeeded

    driver._pass = run_pass  # type: ignore[method-assign]


def driver_of() -> Driver:
    none: Any = None
    return Driver(none, none, resync_seconds=3600)


async def test_a_deletion_waits_for_a_pass_that_succeeds_when_passes_fail_meanwhile() -> None:
    driver = driver_of()
    scripted(driver, iter([False, False, False, True, *[True] * 10]))
    running = asyncio.create_task(driver.run())
    try:
        await asyncio.wait_for(driver.passed_after_now(patience=10), 5)
        # Three failed passes did not release it; the fourth, which succeeded, did.
        assert driver.passes == 4
    finally:
        running.cancel()


async def test_while_every_pass_fails_a_deletion_is_released_after_its_patience() -> None:
    driver = driver_of()
    scripted(driver, iter([False] * 10_000))
    running = asyncio.create_task(driver.run())
    try:
        loop = asyncio.get_running_loop()
        begun = loop.time()
        await asyncio.wait_for(driver.passed_after_now(patience=0.3), 5)
        assert loop.time() - begun >= 0.3 and driver.passes >= 2
    finally:
        running.cancel()
