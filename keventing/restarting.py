"""Keeping a long-running loop alive: run it again a second after it failed, until it is cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

RESTART_DELAY = 1.0  # seconds: long enough not to spin against a broker that is down


async def restarting(
    run: Callable[[], Awaitable[None]],
    log: logging.Logger,
    message: str,
    extra: dict[str, Any] | None = None,
    on_failure: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Await ``run()`` forever; each failure is logged as a warning (``message``, plus the error), then
    ``on_failure()`` is awaited and, after ``RESTART_DELAY``, ``run()`` starts again."""
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning(message, extra={**(extra or {}), "error": repr(err)})
            if on_failure is not None:
                await on_failure()
            await asyncio.sleep(RESTART_DELAY)


async def retrying(
    run: Callable[[], Awaitable[None]],
    log: logging.Logger,
    message: str,
    extra: dict[str, Any] | None = None,
    max_delay: float = 5.0,
) -> None:
    """Await ``run()`` until it succeeds, with backoff from ``RESTART_DELAY`` to ``max_delay``; each failure
    is logged as a warning (``message``, plus the error): a process waits for Kafka, never crash-loops."""
    delay = RESTART_DELAY
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning(message, extra={**(extra or {}), "error": str(err), "retry_in_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
