"""Flame graphs of a running service with py-spy (``make bench`` with ``--profile``), saved with the results.

py-spy samples the process from outside (no change to the code under test, about 1% of a core at 100 Hz) and
writes an SVG flame graph when it is interrupted, which is how :class:`FlameGraph` ends it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

RATE_HZ = 100


def py_spy() -> str:
    """The py-spy executable (the ``bench`` extra installs it beside the interpreter)."""
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise RuntimeError("--profile needs py-spy: pip install -e '.[bench]' (bench/setup.sh does)")
    return found


class FlameGraph:
    """Records ``pid`` while the ``with`` block runs into ``<directory>/<name>.svg``; a no-op without a directory."""

    def __init__(self, pid: int | None, path: Path | None) -> None:
        self.pid = pid
        self.path = path
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def of(cls, pid: int | None, directory: Path | None, name: str) -> FlameGraph:
        return cls(pid, directory / f"{name}.svg" if directory is not None else None)

    def __enter__(self) -> FlameGraph:
        if self.path is None or self.pid is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [py_spy(), "record", "--pid", str(self.pid), "--rate", str(RATE_HZ), "--nonblocking"]
        cmd += ["--format", "flamegraph", "--output", str(self.path)]
        self._process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGINT)  # py-spy writes the graph when interrupted
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        if b"No stack counts found" in stderr:  # the block was too short to catch the process on the CPU
            return
        if process.returncode not in (0, -signal.SIGINT) or not (self.path and self.path.exists()):
            raise RuntimeError(f"py-spy did not write {self.path}: {stderr.decode(errors='replace')[-500:]}")
