"""Alternating A/B runs of the pinned ingress: two source trees' receivers, same Kafka, same machine state.

``python -m bench.ingress_ab --tree A=/path/to/old --tree B=/path/to/new --rounds 3`` starts one Kafka and
stack (from this tree), creates one Broker, then per round restarts the receiver from each tree in turn
(``PYTHONPATH`` set to that tree, ``python -P`` so that the working directory does not come first), pins it
to core 0 and Kafka, wrk and this process to the rest (as ``bench.per_core`` does), and measures CPU-seconds
per 10,000 accepted 1 KiB binary events at 32 connections from ``/proc``. Alternating the trees inside each
round is what makes the comparison fair on a machine others share: a change in background load hits both
alike. ``--paced`` adds the p99 at 1,000 events/s (``bench.loadgen``); ``--profile DIR`` records a py-spy
flame graph of each tree's first round and its collapsed stacks (``receiver-<name>.txt``, for
``bench.profile_groups``). A tree is a checkout, or a ``git archive`` of a commit unpacked somewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import wrk
from bench.harness import Harness, broker_doc, remove, scratch_dir
from bench.meter import cpu_split, process_tree
from bench.per_core import Placement, busy_share, core_busy, pin, placed
from bench.profile import FlameGraph, py_spy
from bench.scenarios import await_accepting, loadgen


def _restart_receiver(harness: Harness, tree: Path) -> int:
    services = harness.services
    services.stop("receiver")
    service = services.service("receiver", PYTHONPATH=str(tree))
    # ``-P``: not the working directory first on sys.path, so PYTHONPATH decides which tree runs.
    service.argv = [sys.executable, "-P", "-m", "kev.cli.main", "receiver"]
    services.start(service)
    services.wait_ready(timeout=120, names=["receiver"])
    pid = harness.pid("receiver")
    assert pid is not None
    return pid


@contextmanager
def _collapsed(pid: int, directory: Path | None, name: str) -> Iterator[None]:
    """Collapsed stacks by function (``py-spy --format raw --function``) beside the SVG, to add up by group."""
    if directory is None:
        yield
        return
    cmd = [py_spy(), "record", "--pid", str(pid), "--rate", "250", "--nonblocking", "--function"]
    cmd += ["--format", "raw", "--output", str(directory / f"receiver-{name}.txt")]
    with _recording(cmd):
        yield


@contextmanager
def _perf(pid: int, directory: Path | None, name: str) -> Iterator[None]:
    """``perf record`` of the receiver, user and kernel (``receiver-<name>.perf.data``): where py-spy sees only
    Python frames, this tells the interpreter, the C extensions (uvloop, httptools, aiokafka's records) and
    the kernel apart (``perf report -i ... --sort dso``)."""
    if directory is None:
        yield
        return
    output = directory / f"receiver-{name}.perf.data"
    cmd = ["perf", "record", "--quiet", "-F", "499", "-g", "-p", str(pid), "-o", str(output)]
    with _recording(cmd):
        yield


@contextmanager
def _recording(cmd: list[str]) -> Iterator[None]:
    """A profiler running while the block does, stopped with SIGINT so that it writes what it recorded."""
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)


def _measure(url: str, pid: int, seconds: float) -> dict[str, Any]:
    wrk.run(url, 8, 2)  # warm-up
    tree = process_tree(pid)
    before, cores = cpu_split(tree), core_busy()
    load = os.getloadavg()[0]
    result = wrk.run(url, 32, seconds)
    after = cpu_split(process_tree(pid))
    user, system = after[0] - before[0], after[1] - before[1]
    cpu = user + system
    return {
        "rate": result["rate"],
        "accepted": result["accepted"],
        "errors": result["errors"],
        "p99_ms": result["latency_ms"]["p99"],
        "cpu_s_per_10k": round(cpu / max(1, int(result["accepted"])) * 10_000, 4),
        "system_share": round(system / cpu, 3) if cpu else 0.0,
        "cores_busy": busy_share(cores, core_busy()),
        "loadavg": round(load, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, help="NAME=PATH of a source tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--paced", action="store_true", help="also p99 at 1,000 events/s")
    parser.add_argument("--profile", type=Path, default=None, help="flame graphs of the first round here")
    parser.add_argument("--perf", type=Path, default=None, help="perf records of the first round here")
    args = parser.parse_args()
    trees = [(name, Path(path).resolve()) for name, path in (t.split("=", 1) for t in args.tree)]
    work = scratch_dir()
    harness = Harness(work, receiver_workers=1, partitions=10, log=lambda m: print(m, file=sys.stderr))
    runs: list[dict[str, Any]] = []
    try:
        harness.start()
        harness.apply(broker_doc("ab"))
        harness.wait_ready("ab")
        url = harness.broker_url("ab")
        placement = Placement.of_machine()
        with placed(harness, placement) as to_data:
            for round_ in range(args.rounds):
                for name, tree in trees:
                    pid = _restart_receiver(harness, tree)
                    await_accepting(url)
                    to_data(pid)
                    time.sleep(0.5)
                    to_data(pid)  # threads started while it got ready
                    graph = args.profile if round_ == 0 else None
                    recorded = args.perf if round_ == 0 else None
                    with (
                        FlameGraph.of(pid, graph, f"receiver-{name}"),
                        _collapsed(pid, graph, name),
                        _perf(pid, recorded, name),
                    ):
                        run = _measure(url, pid, args.seconds)
                    if args.paced:
                        paced = loadgen(url, 1000, 10, f"ab-{name}-{round_}")
                        run["p99_ms_at_1000"] = paced["latency_ms"]["p99"]
                    run.update(tree=name, round=round_)
                    runs.append(run)
                    print(json.dumps(run), flush=True)
            pin(harness.pid("receiver"), placement.every)
    finally:
        harness.stop()
        remove(work)
    for name, _ in trees:
        values = [r["cpu_s_per_10k"] for r in runs if r["tree"] == name]
        print(f"{name}: CPU-s per 10k {values}  median {sorted(values)[len(values) // 2]}")


if __name__ == "__main__":
    main()
