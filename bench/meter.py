"""Process meters read from /proc: peak resident memory and CPU seconds of a process and its children.

A uvicorn receiver with several workers is a tree of processes, so everything here sums over the tree.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    return stat.rpartition(")")[2].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of ``pids`` (fields 14 and 15 of /proc/<pid>/stat)."""
    user, system = cpu_split(pids)
    return user + system


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """User and system CPU time of ``pids``, apart: the system part is the syscalls (and, on loopback, the
    peer's TCP receive that a ``send`` runs)."""
    user = system = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            user += int(fields[11])
            system += int(fields[12])
    return user / _TICKS, system / _TICKS


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


class ProcessMeter:
    """Samples the resident memory of named process trees in a thread and keeps the peak of each.

    ``roots`` maps a name to a function giving the tree's root pid (None while it is not running), so a
    service restarted in the middle of a scenario is still followed.
    """

    def __init__(self, roots: dict[str, Callable[[], int | None]], interval: float = 0.1) -> None:
        self.roots = roots
        self.interval = interval
        self.peak: dict[str, int] = dict.fromkeys(roots, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-meter", daemon=True)
        self._trees: dict[str, list[int]] = {}

    def __enter__(self) -> ProcessMeter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        rounds = 0
        while not self._stop.is_set():
            for name, root in self.roots.items():
                pid = root()
                if pid is None:
                    continue
                # Walking /proc is dearer than reading statm: refresh the tree once a second.
                if rounds % 10 == 0 or name not in self._trees or self._trees[name][0] != pid:
                    self._trees[name] = process_tree(pid)
                self.peak[name] = max(self.peak[name], rss_bytes(self._trees[name]))
            rounds += 1
            self._stop.wait(self.interval)

    def peak_mib(self) -> dict[str, float]:
        return {name: round(value / 2**20, 1) for name, value in self.peak.items()}
