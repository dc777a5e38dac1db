"""The scenarios: each takes the running :class:`Harness` and a :class:`Plan` and returns plain data.

Every scenario reports the peak resident memory of the receiver and the dispatcher while it ran, and the
CPU each process used, so a number can be read against where the machine's two cores went.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench import kafka_gc, wrk
from bench.harness import Harness, broker_doc, trigger_doc
from bench.kafka_perf import producer_performance
from bench.meter import cpu_seconds, process_tree, rss_bytes
from bench.payload import EVENT_TYPE, OTHER_TYPE, event_body
from kev.kafka.embedded import EmbeddedKafka, free_port
from kev.stack import kev_command
from keventing import naming
from keventing.kafka.client import TopicSpec, admin_client, ensure_topic


@dataclass(frozen=True)
class Plan:
    """How much of everything a run does (``make bench`` runs FULL, ``make bench-quick`` QUICK)."""

    name: str
    concurrency: tuple[int, ...]
    step_seconds: float
    rates: tuple[int, ...]
    rate_seconds: float
    drain_events: int
    fanout: tuple[int, ...]
    fanout_events: int
    perf_records: int
    filters_args: tuple[str, ...] | None
    eventtypes: int  # EventTypes in the store when `kev get eventtypes` is timed (the auto-create bound)


FULL = Plan(
    "full",
    (1, 8, 32, 64, 128, 256),
    10,
    (250, 1000, 2000, 5000),
    20,
    100_000,
    (1, 10, 100),
    20_000,
    1_000_000,
    (),
    10_000,
)
QUICK = Plan(
    "quick",
    (8, 32, 128),
    4,
    (250, 1000, 2000, 5000),
    6,
    30_000,
    (1, 10, 100),
    5_000,
    200_000,
    ("--events", "3000", "--repeat", "1"),
    10_000,
)
SMOKE = Plan("smoke", (4,), 1, (100,), 1, 300, (1, 2), 200, 2_000, None, 200)
PLANS = {plan.name: plan for plan in (FULL, QUICK, SMOKE)}


class CpuClock:
    """CPU seconds of the receiver tree, the dispatcher, Kafka and the whole machine between two points."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        h = self.harness
        pids = {name: h.pid(name) for name in ("receiver", "dispatcher")}
        out = {name: cpu_seconds(process_tree(pid)) if pid else 0.0 for name, pid in pids.items()}
        kafka_pid = h.kafka._read_pid() if h.kafka is not None else None
        out["kafka"] = cpu_seconds([kafka_pid]) if kafka_pid else 0.0
        with open("/proc/stat") as fh:
            fields = [float(x) for x in fh.readline().split()[1:]]
        out["machine"] = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
        out["wall"] = time.monotonic()
        return out

    def cores(self) -> dict[str, float]:
        """Average cores used by each since the start (``machine`` is everything, ours or not)."""
        end = self._read()
        wall = max(1e-6, end["wall"] - self.start["wall"])
        return {k: round((end[k] - self.start[k]) / wall, 2) for k in end if k != "wall"}

    def seconds(self, name: str) -> float:
        return self._read()[name] - self.start[name]


# ----------------------------------------------------------------------------------------- ingress


def ingress(harness: Harness, plan: Plan) -> dict[str, Any]:
    """wrk against the receiver at rising concurrency; then Kafka must hold exactly what was accepted."""
    ns = "ingress"
    topic = naming.broker_topic(ns, "default")
    harness.apply(broker_doc(ns))
    harness.wait_ready(ns)
    url = harness.broker_url(ns)
    await_accepting(url)
    wrk.run(url, 8, 1)  # warm-up: connections, producer metadata
    stored_before = harness.topic_size(topic)
    accepted_before = harness.receiver_accepted()
    steps = []
    with harness.meter() as meter:
        for connections in plan.concurrency:
            clock = CpuClock(harness)
            result = wrk.run(url, connections, plan.step_seconds)
            result["cores"] = clock.cores()
            rate = result["rate"]
            receiver_cores = result["cores"]["receiver"]
            result["receiver_cpu_us_per_event"] = round(receiver_cores / rate * 1e6, 1) if rate else None
            steps.append(result)
        time.sleep(1)  # the last answers of requests wrk stopped waiting for
    stored = harness.topic_size(topic) - stored_before
    accepted = harness.receiver_accepted()
    accepted_delta = None if accepted is None or accepted_before is None else accepted - accepted_before
    seen = sum(int(s["accepted"]) for s in steps)
    # wrk sends one event over and over (ce-id wrk-1): what Kafka holds must be that event, unaltered.
    samples = [(dict(h), v) for h, v in harness.sample_records(topic, 50) if dict(h).get("ce_id") == b"wrk-1"]
    intact = all(
        value == event_body() and headers.get("ce_type") == EVENT_TYPE.encode() for headers, value in samples
    )
    return {
        "steps": steps,
        "peak_rate": max(float(s["rate"]) for s in steps),
        "verification": {
            "accepted_by_receiver": accepted_delta,
            "accepted_seen_by_client": seen,
            "stored_on_kafka": stored,
            # Requests still in flight when wrk stops are accepted by the receiver but never seen by wrk.
            "exact": accepted_delta == stored if accepted_delta is not None else None,
            "sampled_records_intact": intact and len(samples) > 0,
        },
        "peak_rss_mib": meter.peak_mib(),
    }


def await_accepting(url: str, timeout: float = 30.0) -> None:
    """The Broker is Ready before the receiver has read its ingress from the contract: wait for a 202."""
    import urllib.request

    from bench.payload import http_headers

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = urllib.request.Request(url, data=b"{}", headers=http_headers("probe"), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 202:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not accept an event in {timeout:.0f} s")


def http_ceiling(harness: Harness, plan: Plan) -> dict[str, Any]:
    """The same server stack and worker count answering 202 without Kafka."""
    port = free_port()
    server = harness.spawn(
        [sys.executable, "-m", "bench.ceiling"],
        "ceiling",
        KEVENTING_RECEIVER_PORT=str(port),
        KEVENTING_RECEIVER_WORKERS=str(harness.receiver_workers),
        KEVENTING_HTTP_HOST="127.0.0.1",
    )
    url = f"http://127.0.0.1:{port}/ceiling/default"
    try:
        await_accepting(url)
        wrk.run(url, 8, 1)
        steps = []
        for connections in plan.concurrency:
            before = cpu_seconds(process_tree(server.pid))
            result = wrk.run(url, connections, plan.step_seconds)
            server_cores = (cpu_seconds(process_tree(server.pid)) - before) / float(result["elapsed_s"])
            result["server_cpu_us_per_event"] = (
                round(server_cores / result["rate"] * 1e6, 1) if result["rate"] else None
            )
            steps.append(result)
    finally:
        harness.end(server)
    return {"steps": steps, "peak_rate": max(float(s["rate"]) for s in steps)}


def kafka_ceiling(harness: Harness, plan: Plan) -> dict[str, Any]:
    """Kafka's ProducerPerformance, 1 KiB records, acks=all, on a topic shaped like a Broker's."""
    topic = f"{harness.instance}.producer-performance"

    async def create() -> None:
        async with admin_client(harness.bootstrap) as admin:
            await ensure_topic(admin, TopicSpec(topic, harness.partitions))

    from bench.harness import run_async

    run_async(create())
    kafka = harness.kafka or EmbeddedKafka()
    return producer_performance(kafka, harness.bootstrap, topic, plan.perf_records)


# -------------------------------------------------------------------------------------- end to end


def end_to_end(harness: Harness, plan: Plan) -> dict[str, Any]:
    """Broker → Trigger → sink at fixed offered rates; latency from the sender's clock to the sink's."""
    ns = "e2e"
    harness.apply(broker_doc(ns), trigger_doc(ns, "all", harness.sink_url("e2e")))
    harness.wait_ready(ns, triggers=1)
    url = harness.broker_url(ns)
    await_accepting(url)
    loadgen(url, 200, 1, "warmup")
    harness.wait_sink("e2e", 200, timeout=30, idle=5)
    harness.sink_stats("e2e", reset=True)
    runs = []
    with harness.meter() as meter:
        for rate in plan.rates:
            clock = CpuClock(harness)
            began = time.time()
            sent = loadgen(url, rate, plan.rate_seconds, f"r{rate}")
            received = harness.wait_sink("e2e", int(sent["accepted"]), timeout=60, idle=10)
            cores = clock.cores()
            slow = [(at, latency) for at, latency in harness.sink_stats("e2e", reset=True, slow=True)["slow"]]
            span = (received["last_ns"] - received["first_ns"]) / 1e9
            runs.append(
                {
                    "offered_rate": rate,
                    "sender": sent,
                    "accepted": sent["accepted"],
                    "delivered": received["unique"],
                    "delivered_rate": round(received["unique"] / span, 1) if span > 0 else None,
                    "lost": int(sent["accepted"]) - received["unique"],
                    "duplicates": received["duplicates"],
                    "latency_ms": received["latency_ms"],
                    "cores": cores,
                    # None on a Kafka of the user's (KAFKA_BOOTSTRAP_SERVERS): its GC log is not ours to read.
                    "kafka_gc": kafka_gc.summary(
                        kafka_gc.read(harness.kafka.gc_log_file, began, time.time()), slow
                    )
                    if harness.kafka is not None
                    else None,
                }
            )
    return {"runs": runs, "peak_rss_mib": meter.peak_mib()}


def loadgen(url: str, rate: float, seconds: float, run_id: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.loadgen", "--url", url, "--rate", str(rate)]
    cmd += ["--duration", str(seconds), "--run-id", run_id]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    return dict(json.loads(out))


# ------------------------------------------------------------------------------------------- drain


def drain(harness: Harness, plan: Plan) -> dict[str, Any]:
    """``drain_events`` already on the topic, one Trigger to the sink; the dispatcher starts and drains."""
    ns = "drain"
    topic = naming.broker_topic(ns, "default")
    harness.apply(broker_doc(ns), trigger_doc(ns, "all", harness.sink_url("drain")))
    harness.wait_ready(ns, triggers=1)
    harness.services.stop("dispatcher")
    produce_s = harness.produce(topic, plan.drain_events, "drain")
    with harness.meter() as meter:
        harness.restart("dispatcher")
        while harness.sink_stats("drain")["count"] == 0:
            time.sleep(0.05)
        clock = CpuClock(harness)
        received = harness.wait_sink("drain", plan.drain_events, timeout=600, idle=20)
        cores = clock.cores()
        cpu = clock.seconds("dispatcher")
    span = (received["last_ns"] - received["first_ns"]) / 1e9
    harness.delete(ns, ["all"], broker=False)  # the baseline reads the same topic next
    return {
        "events": plan.drain_events,
        "delivered": received["unique"],
        "lost": plan.drain_events - received["unique"],
        "rate": round((received["unique"] - 1) / span, 1) if span > 0 else None,
        "produce_seconds": round(produce_s, 2),
        "dispatcher_cpu_us_per_event": round(cpu / max(1, received["unique"]) * 1e6, 1),
        "cores": cores,
        "peak_rss_mib": meter.peak_mib(),
    }


def drain_baseline(harness: Harness, plan: Plan) -> dict[str, Any]:
    """A minimal aiokafka consumer POSTing the same topic's records with a pooled client, nothing else."""
    topic = naming.broker_topic("drain", "default")
    process = harness.spawn(
        drain_baseline_command(harness, topic, "baseline", plan.drain_events), "drain-baseline"
    )
    try:
        while harness.sink_stats("baseline")["count"] == 0 and process.poll() is None:
            time.sleep(0.05)
        first_cpu = cpu_seconds([process.pid])
        received = harness.wait_sink("baseline", plan.drain_events, timeout=600, idle=20)
        cpu = cpu_seconds([process.pid]) - first_cpu
        process.wait(30)
    finally:
        harness.end(process)
    harness.delete("drain", [])
    span = (received["last_ns"] - received["first_ns"]) / 1e9
    return {
        "events": plan.drain_events,
        "delivered": received["unique"],
        "lost": plan.drain_events - received["unique"],
        "rate": round((received["unique"] - 1) / span, 1) if span > 0 else None,
        "cpu_us_per_event": round(cpu / max(1, received["unique"]) * 1e6, 1),
    }


def drain_baseline_command(harness: Harness, topic: str, path: str, count: int) -> list[str]:
    cmd = [sys.executable, "-m", "bench.drain_baseline", "--bootstrap", harness.bootstrap, "--topic", topic]
    return [*cmd, "--url", harness.sink_url(path), "--count", str(count)]


# ------------------------------------------------------------------------------------------ fan-out


def fanout(harness: Harness, plan: Plan) -> dict[str, Any]:
    """1, 10, 100 Triggers on one Broker, one of them selecting the events: rate and dispatcher CPU/event.

    The Triggers are placed first; then ``fanout_events`` are produced in one burst while the dispatcher
    runs, and its CPU is counted from the burst until every Trigger's group committed the end of the topic.
    """
    rows = []
    for count in plan.fanout:
        ns = f"fanout{count}"
        topic = naming.broker_topic(ns, "default")
        names = [f"t{i}" for i in range(count)]
        docs = [broker_doc(ns)]
        docs += [
            trigger_doc(
                ns,
                name,
                harness.sink_url(ns if i == 0 else f"{ns}-{name}"),
                EVENT_TYPE if i == 0 else f"{OTHER_TYPE}{i}",
            )
            for i, name in enumerate(names)
        ]
        harness.apply(*docs)
        harness.wait_ready(ns, triggers=count, timeout=300)
        time.sleep(1)
        idle = CpuClock(harness)
        time.sleep(2)
        idle_cores = idle.cores()["dispatcher"]
        with harness.meter() as meter:
            clock = CpuClock(harness)
            harness.produce(topic, plan.fanout_events, ns)
            received = harness.wait_sink(ns, plan.fanout_events, timeout=600, idle=20)
            ends = harness.partition_ends(topic)
            deadline = time.monotonic() + 300
            while not harness.groups_done(ns, names, ends) and time.monotonic() < deadline:
                time.sleep(0.5)
            done_s = time.monotonic() - clock.start["wall"]
            cpu = clock.seconds("dispatcher")
        span = (received["last_ns"] - received["first_ns"]) / 1e9
        rows.append(
            {
                "triggers": count,
                "events": plan.fanout_events,
                "delivered": received["unique"],
                "lost": plan.fanout_events - received["unique"],
                "rate": round((received["unique"] - 1) / span, 1) if span > 0 else None,
                "all_groups_done_s": round(done_s, 2),
                "dispatcher_cpu_s": round(cpu, 2),
                "dispatcher_cpu_us_per_event": round(cpu / max(1, received["unique"]) * 1e6, 1),
                "dispatcher_idle_cores": idle_cores,
                "peak_rss_mib": meter.peak_mib(),
            }
        )
        harness.delete(ns, names)
    return {"rows": rows}


# -------------------------------------------------------------------------------------- eventtypes
def eventtypes(harness: Harness, plan: Plan) -> dict[str, Any]:
    """`kev get eventtypes` with the store at EventType auto-create's bounds, against `kev get brokers`.

    Auto-create stops at 1,000 EventTypes per Broker and 10,000 per controller (issue #15, finding 9), so
    that is what a user can have to list: ``plan.eventtypes`` of them over Brokers of 1,000 each. Each
    command is timed from start to exit (Python start-up included, as a user waits for it), best of three;
    the ratio to listing the few Brokers is the cost of the EventTypes themselves (`-A` also lists the
    EventTypes auto-created by the events of the scenarios before).
    """
    per_broker = 1_000
    namespaces = [f"et{i}" for i in range((plan.eventtypes + per_broker - 1) // per_broker)]
    documents: list[dict[str, Any]] = [broker_doc(ns) for ns in namespaces]
    for n in range(plan.eventtypes):
        ns = namespaces[n // per_broker]
        documents.append(
            {
                "apiVersion": "eventing.knative.dev/v1beta2",
                "kind": "EventType",
                "metadata": {"name": f"et-{n}", "namespace": ns},
                "spec": {
                    "type": f"dev.bench.type{n}",
                    "source": "/bench",
                    "reference": {
                        "apiVersion": "eventing.knative.dev/v1",
                        "kind": "Broker",
                        "name": "default",
                    },
                },
            }
        )
    started = time.monotonic()
    harness.apply(*documents)
    applied_s = time.monotonic() - started
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": harness.bootstrap, "KEVENTING_INSTANCE": harness.instance}

    def best_of_three(*args: str) -> tuple[float, int]:
        times, lines = [], 0
        for _ in range(3):
            began = time.monotonic()
            out = subprocess.run([*kev_command(), "get", *args], env=env, capture_output=True, check=True)
            times.append(time.monotonic() - began)
            lines = out.stdout.count(b"\n")
        return min(times), lines

    brokers_s, _ = best_of_three("brokers", "-A")
    all_s, all_lines = best_of_three("eventtypes", "-A")
    one_s, one_lines = best_of_three("eventtypes", "-n", namespaces[0])
    controller = harness.pid("controller")
    return {
        "eventtypes": plan.eventtypes,
        "brokers": len(namespaces),
        "apply_s": round(applied_s, 1),
        "get_brokers_s": round(brokers_s, 2),
        "get_eventtypes_all_s": round(all_s, 2),
        "get_eventtypes_all_rows": all_lines - 1,
        "get_eventtypes_one_namespace_s": round(one_s, 2),
        "get_eventtypes_one_namespace_rows": one_lines - 1,
        "ratio_all_to_brokers": round(all_s / brokers_s, 2),
        "controller_rss_mib": round(rss_bytes(process_tree(controller)) / 2**20, 1) if controller else None,
    }
