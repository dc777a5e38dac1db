"""ContainerSource: its container's command runs as a supervised local process.

The process gets the runner's environment plus the container's ``env`` and the SinkBinding variables
(``K_SINK``, ``K_CE_OVERRIDES``) the controller put in the contract. Its output goes to the runner's log,
one record per line. When it exits it is restarted after a backoff that doubles with every quick exit
(Kubernetes' CrashLoopBackOff, scaled down) and starts over once a run lasted longer than the maximum.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass

from keventing.contract import Source

log = logging.getLogger("keventing.sources.container")

STOP_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    maximum: float = 60.0

    def delay(self, quick_exits: int) -> float:
        """The wait before the next start, after ``quick_exits`` consecutive short runs."""
        return min(self.maximum, self.initial * 2 ** max(0, quick_exits - 1))

    def quick(self, ran_for: float) -> bool:
        return ran_for < self.maximum


class Supervised:
    """One ContainerSource's process, kept running until ``stop``."""

    def __init__(self, source: Source, backoff: Backoff) -> None:
        assert source.container is not None
        self.source = source
        self.backoff = backoff
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.task = asyncio.create_task(self._supervise())

    @property
    def restarts(self) -> int:
        return max(0, self.starts - 1)

    async def _supervise(self) -> None:
        quick_exits = 0
        try:
            while True:
                started = time.monotonic()
                code = await self._run_once()
                ran_for = time.monotonic() - started
                quick_exits = quick_exits + 1 if self.backoff.quick(ran_for) else 1
                delay = self.backoff.delay(quick_exits)
                log.info(
                    "container process exited; restarting",
                    extra={"source": self.source.id, "exit_code": code, "restart_in_s": delay},
                )
                await asyncio.sleep(delay)
        finally:
            await self._terminate()

    async def _run_once(self) -> int | None:
        container = self.source.container
        assert container is not None
        try:
            self.process = await asyncio.create_subprocess_exec(
                *container.argv,
                env={**os.environ, **container.env},
                cwd=container.working_dir or None,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group, so that stopping it stops its children
            )
        except OSError as err:
            log.warning(
                "container process could not start", extra={"source": self.source.id, "error": str(err)}
            )
            return None
        self.starts += 1
        log.info(
            "container process started",
            extra={"source": self.source.id, "pid": self.process.pid, "argv": list(container.argv)},
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        await asyncio.gather(
            self._pump(self.process.stdout, "stdout"), self._pump(self.process.stderr, "stderr")
        )
        return await self.process.wait()

    async def _pump(self, stream: asyncio.StreamReader, name: str) -> None:
        while line := await stream.readline():
            log.info(
                line.decode(errors="replace").rstrip(),
                extra={"source": self.source.id, "stream": name},
            )

    async def _terminate(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), STOP_GRACE_SECONDS)
        except TimeoutError:
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


class ContainerSupervisor:
    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.running: dict[str, Supervised] = {}

    async def ensure(self, source: Source) -> None:
        """Run ``source``'s process; a changed spec restarts it."""
        current = self.running.get(source.id)
        if current is not None and current.source == source:
            return
        await self.stop(source.id)
        self.running[source.id] = Supervised(source, self.backoff)

    async def stop(self, source_id: str) -> None:
        supervised = self.running.pop(source_id, None)
        if supervised is not None:
            await supervised.stop()
            log.info("container process stopped", extra={"source": source_id})

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(source_id) for source_id in list(self.running)))
