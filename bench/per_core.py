"""The per-core scenario: the data plane on one core, everything else on the other (issue #16's method).

The receiver, then the dispatcher, run pinned to core 0 (every thread of every process of their trees);
Kafka, the sink, the load generator and this process are pinned to the other cores. CPU comes from
``/proc/PID/stat``, so the figures read as CPU-seconds per 10,000 events on one core and compare with the
Java data plane's figures measured the same way. The HTTP ceiling and the drain baseline run pinned to the
same core in the same run, so every figure has its reference beside it.

On a machine with a single core nothing is pinned and the result says so.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import wrk
from bench.harness import Harness, broker_doc, trigger_doc
from bench.meter import cpu_seconds, process_tree
from bench.payload import EVENT_TYPE, OTHER_TYPE
from bench.profile import FlameGraph
from bench.scenarios import Plan, await_accepting, drain_baseline_command, loadgen
from kev.kafka.embedded import free_port
from keventing import naming

DATA_CORE = 0
PER_10K = 10_000

# Knative's Kafka-broker data plane (Java 21, Vert.x) on this machine kind, one core each, 1 KiB binary events,
# as measured for issue #16 (the low end of each range it gives): what "per core" compares against.
JAVA = {
    "ingress_cpu_s_per_10k": 0.17,
    "ingress_peak_rate": 34_000,
    "ingress_p99_ms_at_1000": 2.9,
    "drain_cpu_s_per_10k": 0.49,
    "drain_rate": 17_000,
    "fanout10_cpu_s_per_10k": 2.46,
    "receiver_rss_mib": 195,
    "dispatcher_rss_mib": 370,
}


def _tasks(pid: int) -> list[int]:
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def pin(root: int | None, cores: set[int]) -> None:
    """Pin every thread of ``root`` and its descendants to ``cores``."""
    if root is None:
        return
    for pid in process_tree(root):
        for tid in _tasks(pid):
            try:
                os.sched_setaffinity(tid, cores)
            except OSError:  # the thread ended between listing and pinning
                continue


@dataclass
class Placement:
    """Which core the data plane gets and which the rest; ``pinned`` is False on a one-core machine."""

    data: set[int]
    rest: set[int]
    every: set[int]

    @property
    def pinned(self) -> bool:
        return bool(self.rest)

    @classmethod
    def of_machine(cls) -> Placement:
        every = set(os.sched_getaffinity(0))
        if len(every) < 2:
            return cls(every, set(), every)
        data = {DATA_CORE if DATA_CORE in every else min(every)}
        return cls(data, every - data, every)


@contextmanager
def placed(harness: Harness, placement: Placement) -> Iterator[Callable[[int | None], None]]:
    """Kafka, the sink and this process (hence wrk and the load generator) on the rest; yields ``to_data``.

    ``to_data(pid)`` pins a process tree to the data core. Everything gets every core back afterwards.
    """
    if not placement.pinned:
        yield lambda pid: None
        return
    kafka_pid = harness.kafka._read_pid() if harness.kafka is not None else None
    others = [os.getpid(), kafka_pid, harness.sink.pid if harness.sink is not None else None]
    for pid in others:
        pin(pid, placement.rest)
    try:
        yield functools.partial(pin, cores=placement.data)
    finally:
        for pid in [*others, harness.pid("receiver"), harness.pid("dispatcher")]:
            pin(pid, placement.every)


def core_busy() -> dict[int, tuple[float, float]]:
    """(busy, total) jiffies of every CPU from /proc/stat, to tell which core was the limit."""
    out = {}
    with open("/proc/stat") as fh:
        for line in fh:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                values = [float(x) for x in fields[:8]]
                out[int(name[3:])] = (sum(values) - values[3] - values[4], sum(values))
    return out


def busy_share(
    before: dict[int, tuple[float, float]], after: dict[int, tuple[float, float]]
) -> dict[str, float]:
    """The share of each core that was busy between two readings of :func:`core_busy`."""
    return {
        f"cpu{n}": round((after[n][0] - before[n][0]) / max(1.0, after[n][1] - before[n][1]), 2)
        for n in sorted(after)
        if n in before
    }


def _per_10k(cpu: float, events: int) -> float | None:
    return round(cpu / events * PER_10K, 3) if events > 0 else None


def per_core(harness: Harness, plan: Plan, profile_dir: Path | None = None) -> dict[str, Any]:
    placement = Placement.of_machine()
    out: dict[str, Any] = {
        "pinned": placement.pinned,
        "data_core": sorted(placement.data),
        "other_cores": sorted(placement.rest),
        "loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "java": JAVA,
    }
    with harness.meter() as meter, placed(harness, placement) as to_data:
        to_data(harness.pid("receiver"))
        to_data(harness.pid("dispatcher"))
        out["ingress"] = _ingress(harness, plan, profile_dir)
        out["http_ceiling"] = _ceiling(harness, plan, to_data)
        out["drain"], out["drain_baseline"] = _drain(harness, plan, to_data, profile_dir)
        out["fanout10"] = _fanout(harness, plan, 10)
    out["peak_rss_mib"] = meter.peak_mib()
    out["loadavg_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return out


# ------------------------------------------------------------------------------------------ ingress


def _ingress(harness: Harness, plan: Plan, profile_dir: Path | None) -> dict[str, Any]:
    ns = "percore"
    harness.apply(broker_doc(ns))
    harness.wait_ready(ns)
    url = harness.broker_url(ns)
    await_accepting(url)
    wrk.run(url, 8, 1)  # warm-up
    receiver = harness.pid("receiver")
    steps = []
    for connections in (32, 128):
        with FlameGraph.of(receiver, profile_dir, f"receiver-ingress-c{connections}"):
            before, cores_before = cpu_seconds(process_tree(receiver)) if receiver else 0.0, core_busy()
            result = wrk.run(url, connections, plan.step_seconds)
            cpu = (cpu_seconds(process_tree(receiver)) if receiver else 0.0) - before
            busy = busy_share(cores_before, core_busy())
        steps.append(
            {
                "connections": connections,
                "rate": result["rate"],
                "accepted": result["accepted"],
                "errors": result["errors"],
                "latency_ms": result["latency_ms"],
                "cpu_s": round(cpu, 3),
                "cpu_s_per_10k": _per_10k(cpu, int(result["accepted"])),
                "cores_busy": busy,  # whether the receiver's core or the other (Kafka, wrk) was the limit
            }
        )
    paced = loadgen(url, 1000, plan.rate_seconds, "percore")
    harness.delete(ns, [])
    return {
        "steps": steps,
        "cpu_s_per_10k": steps[0]["cpu_s_per_10k"],  # at 32 connections, as in the Java figures
        "peak_rate": max(float(s["rate"]) for s in steps),
        "p99_ms_at_1000": paced["latency_ms"]["p99"],
        "p50_ms_at_1000": paced["latency_ms"]["p50"],
        "paced_rate": paced["achieved_rate"],
    }


def _ceiling(harness: Harness, plan: Plan, to_data: Callable[[int | None], None]) -> dict[str, Any]:
    """The receiver's server stack answering 202 without Kafka, on the same core."""
    port = free_port()
    server = harness.spawn(
        [sys.executable, "-m", "bench.ceiling"],
        "percore-ceiling",
        KEVENTING_RECEIVER_PORT=str(port),
        KEVENTING_RECEIVER_WORKERS="1",
        KEVENTING_HTTP_HOST="127.0.0.1",
    )
    url = f"http://127.0.0.1:{port}/ceiling/default"
    try:
        await_accepting(url)
        to_data(server.pid)
        wrk.run(url, 8, 1)
        before = cpu_seconds(process_tree(server.pid))
        result = wrk.run(url, 32, plan.step_seconds)
        cpu = cpu_seconds(process_tree(server.pid)) - before
    finally:
        harness.end(server)
    return {
        "rate": result["rate"],
        "cpu_s_per_10k": _per_10k(cpu, int(result["accepted"])),
        "latency_ms": result["latency_ms"],
    }


# -------------------------------------------------------------------------------------------- drain


@dataclass
class _Mark:
    at: float
    cpu: float
    count: int


def _steady(
    harness: Harness, path: str, events: int, cpu: Callable[[], float], timeout: float = 600
) -> dict[str, Any]:
    """Rate and CPU between 10% and 90% of ``events`` delivered at ``path`` (the steady part of a backlog).

    A backlog too small to see that window (a smoke run's) is measured whole, from the call to the end.
    """
    low, high = events // 10, events - events // 10
    start = _Mark(time.monotonic(), cpu(), 0)
    marks: list[_Mark] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        unique = harness.sink_stats(path)["unique"]
        if not marks and unique >= low:
            marks.append(_Mark(time.monotonic(), cpu(), unique))
        elif marks and unique >= high:
            marks.append(_Mark(time.monotonic(), cpu(), unique))
            break
        time.sleep(0.02)
    final = harness.wait_sink(path, events, timeout=max(1.0, deadline - time.monotonic()), idle=20)
    end = _Mark(time.monotonic(), cpu(), final["unique"])
    first, last = (marks[0], marks[1]) if len(marks) == 2 else (start, end)
    if last.count - first.count < max(1, events // 4):
        first, last = start, end
    delivered = last.count - first.count
    return {
        "delivered": final["unique"],
        "lost": events - final["unique"],
        "rate": round(delivered / max(1e-6, last.at - first.at), 1) if delivered else None,
        "cpu_s_per_10k": _per_10k(last.cpu - first.cpu, delivered),
        "window": "10%–90%" if first is not start else "whole run",
    }


def _drain(
    harness: Harness, plan: Plan, to_data: Callable[[int | None], None], profile_dir: Path | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    ns = "percore-drain"
    topic = naming.broker_topic(ns, "default")
    events = plan.drain_events
    harness.apply(broker_doc(ns), trigger_doc(ns, "all", harness.sink_url(ns)))
    harness.wait_ready(ns, triggers=1)
    harness.services.stop("dispatcher")
    harness.produce(topic, events, ns)
    service = harness.services.start(harness.services.service("dispatcher"))
    pid = service.process.pid if service.process is not None else None
    to_data(pid)
    harness.services.wait_ready(timeout=120, names=["dispatcher"])
    to_data(pid)  # threads started while it got ready
    with FlameGraph.of(pid, profile_dir, "dispatcher-drain"):
        drain = _steady(harness, ns, events, lambda: cpu_seconds([pid]) if pid else 0.0)
    harness.delete(ns, ["all"], broker=False)

    process = harness.spawn(
        drain_baseline_command(harness, topic, f"{ns}-baseline", events), "percore-baseline"
    )
    try:
        to_data(process.pid)
        baseline = _steady(harness, f"{ns}-baseline", events, lambda: cpu_seconds([process.pid]))
        process.wait(30)
    finally:
        harness.end(process)
    harness.delete(ns, [])
    return drain, baseline


# ------------------------------------------------------------------------------------------ fan-out


def _fanout(harness: Harness, plan: Plan, count: int) -> dict[str, Any]:
    """``count`` Triggers, one matching: dispatcher CPU from the burst until every group is at the end."""
    ns = f"percore-fan{count}"
    topic = naming.broker_topic(ns, "default")
    names = [f"t{i}" for i in range(count)]
    docs = [broker_doc(ns)]
    docs += [
        trigger_doc(ns, name, harness.sink_url(ns), EVENT_TYPE if i == 0 else f"{OTHER_TYPE}{i}")
        for i, name in enumerate(names)
    ]
    harness.apply(*docs)
    harness.wait_ready(ns, triggers=count, timeout=300)
    pid = harness.pid("dispatcher")
    before = cpu_seconds([pid]) if pid else 0.0
    harness.produce(topic, plan.fanout_events, ns)
    received = harness.wait_sink(ns, plan.fanout_events, timeout=600, idle=20)
    ends = harness.partition_ends(topic)
    deadline = time.monotonic() + 300
    while not harness.groups_done(ns, names, ends) and time.monotonic() < deadline:
        time.sleep(0.2)
    cpu = (cpu_seconds([pid]) if pid else 0.0) - before
    harness.delete(ns, names)
    return {
        "triggers": count,
        "events": plan.fanout_events,
        "delivered": received["unique"],
        "lost": plan.fanout_events - received["unique"],
        "cpu_s_per_10k": _per_10k(cpu, int(received["unique"])),
    }
