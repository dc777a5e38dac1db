"""From a results document to what people read: the ratios against their targets, a Markdown table, plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Ratio:
    name: str
    value: float | None
    target: str  # e.g. "≥ 0.5"; "" when the issue sets none
    met: bool | None
    shortfall: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "target": self.target,
            "met": self.met,
            "shortfall": self.shortfall,
        }


def _div(a: Any, b: Any) -> float | None:
    return round(float(a) / float(b), 3) if a is not None and b else None


def _at_least(name: str, value: float | None, target: float) -> Ratio:
    if value is None:
        return Ratio(name, None, f"≥ {target}", None, "not measured")
    met = value >= target
    shortfall = "" if met else f"missed by {(target - value) / target:.0%} ({value} of {target})"
    return Ratio(name, value, f"≥ {target}", met, shortfall)


def _at_most(name: str, value: float | None, target: float) -> Ratio:
    if value is None:
        return Ratio(name, None, f"≤ {target}", None, "not measured")
    met = value <= target
    shortfall = "" if met else f"missed by {(value - target) / target:.0%} ({value} vs {target})"
    return Ratio(name, value, f"≤ {target}", met, shortfall)


def ratios(scenarios: dict[str, Any]) -> list[Ratio]:
    """The issue's ratios with their targets (on this machine: 2 cores, Kafka on the same machine)."""
    ingress = scenarios.get("ingress", {}).get("peak_rate")
    http = scenarios.get("http_ceiling", {}).get("peak_rate")
    kafka = scenarios.get("kafka_ceiling", {}).get("rate")
    drain = scenarios.get("drain", {}).get("rate")
    baseline = scenarios.get("drain_baseline", {}).get("rate")
    out = [
        _at_least("ingress / HTTP ceiling (peak events/s)", _div(ingress, http), 0.5),
        Ratio("ingress / Kafka ceiling (peak events/s)", _div(ingress, kafka), "", None),
        _at_least("drain / drain baseline (events/s)", _div(drain, baseline), 0.8),
    ]
    rows = {row["triggers"]: row for row in scenarios.get("fanout", {}).get("rows", [])}
    if rows:
        most, least = max(rows), min(rows)
        value = _div(rows[most]["dispatcher_cpu_us_per_event"], rows[least]["dispatcher_cpu_us_per_event"])
        out.append(_at_most(f"fan-out CPU per event, {most} / {least} trigger(s)", value, 3))
    for run in scenarios.get("end_to_end", {}).get("runs", []):
        rate, target = run["offered_rate"], E2E_P99_TARGETS_MS.get(run["offered_rate"])
        if target is None:
            continue
        out.append(_at_most(f"end to end at {rate:,} events/s: p99 ms", run["latency_ms"]["p99"], target))
        lost = run["lost"]
        out.append(
            Ratio(
                f"end to end at {rate:,} events/s: lost",
                lost,
                "= 0",
                lost == 0,
                "" if lost == 0 else f"{lost} lost",
            )
        )
    out += per_core_ratios(scenarios.get("per_core"))
    return out


# Issue #16's targets: p99 at 1,000/s from the first bench issue, at 5,000/s from #16.
E2E_P99_TARGETS_MS = {1000: 50, 5000: 10}


def per_core_ratios(core: dict[str, Any] | None) -> list[Ratio]:
    """Issue #16's per-core targets: CPU-seconds per 10k events on one core, memory against Java's."""
    if not core:
        return []
    java = core["java"]
    rss = core.get("peak_rss_mib", {})
    return [
        _at_most("per core: ingress CPU-s per 10k events", core["ingress"]["cpu_s_per_10k"], 0.30),
        _at_most("per core: drain CPU-s per 10k events", core["drain"]["cpu_s_per_10k"], 0.65),
        _at_most(
            "per core: receiver peak RSS / Java's", _div(rss.get("receiver"), java["receiver_rss_mib"]), 0.5
        ),
        _at_most(
            "per core: dispatcher peak RSS / Java's",
            _div(rss.get("dispatcher"), java["dispatcher_rss_mib"]),
            0.5,
        ),
    ]


def per_core_table(core: dict[str, Any]) -> list[str]:
    """The per-core figures beside Knative's Java data plane's (issue #16's table) and the same-core references."""
    java, ingress, drain = core["java"], core["ingress"], core["drain"]
    base, ceiling, fan = core["drain_baseline"], core["http_ceiling"], core["fanout10"]
    rss = core.get("peak_rss_mib", {})
    rows = [
        (
            "ingress CPU-s per 10k events (wrk, 32 connections)",
            ingress["cpu_s_per_10k"],
            3,
            java["ingress_cpu_s_per_10k"],
            ceiling["cpu_s_per_10k"],
        ),
        ("ingress peak events/s", ingress["peak_rate"], 0, java["ingress_peak_rate"], ceiling["rate"]),
        (
            "ingress p99 ms at 1,000 events/s",
            ingress["p99_ms_at_1000"],
            1,
            java["ingress_p99_ms_at_1000"],
            None,
        ),
        (
            "drain CPU-s per 10k events (steady part)",
            drain["cpu_s_per_10k"],
            3,
            java["drain_cpu_s_per_10k"],
            base["cpu_s_per_10k"],
        ),
        ("drain events/s (steady part)", drain["rate"], 0, java["drain_rate"], base["rate"]),
        (
            "fan-out, 10 Triggers (1 matching), CPU-s per 10k",
            fan["cpu_s_per_10k"],
            3,
            java["fanout10_cpu_s_per_10k"],
            None,
        ),
        ("peak RSS receiver MiB", rss.get("receiver"), 0, java["receiver_rss_mib"], None),
        ("peak RSS dispatcher MiB", rss.get("dispatcher"), 0, java["dispatcher_rss_mib"], None),
    ]
    where = (
        f"receiver and dispatcher pinned to core {core['data_core']}, everything else on {core['other_cores']}"
        if core["pinned"]
        else "one core: nothing pinned"
    )
    lines = [
        "",
        "## Per core (issue #16's method)",
        "",
        f"{where}; load average {core['loadavg_before']} before, {core['loadavg_after']} after.",
        "Reference: the HTTP ceiling (ingress rows) and the drain baseline (drain rows), pinned to the same core.",
        "",
        "| figure (one core) | keventing | Knative (Java) | keventing / Java | reference, same core |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, ours, digits, theirs, reference in rows:
        lines.append(
            f"| {name} | {_fmt(ours, digits)} | {_fmt(theirs, digits)} | {_fmt(_div(ours, theirs), 2)} | "
            f"{_fmt(reference, digits)} |"
        )
    lost = drain["lost"] + base["lost"] + fan["lost"]
    lines += ["", f"Events lost in the per-core runs: {lost}."]
    for step in ingress["steps"]:
        if step.get("cores_busy"):
            shares = ", ".join(f"{cpu} {share:.0%}" for cpu, share in step["cores_busy"].items())
            lines.append(f"Cores busy during ingress at {step['connections']} connections: {shares}.")
    return lines


def _gc_pauses(gc: dict[str, Any] | None) -> str:
    if gc is None:
        return "— (not our Kafka)"
    return f"{gc['pauses']} ({_fmt(gc['total_ms'], 0)}, {_fmt(gc['max_ms'], 1)})"


def _gc_share(gc: dict[str, Any] | None) -> str:
    if gc is None or not gc["slow_events"]:
        return "—"
    return f"{gc['slow_in_pause']:,} of {gc['slow_events']:,} ({100 * gc['slow_in_pause'] / gc['slow_events']:.0f} %)"


def _other_load(run: dict[str, Any]) -> float | None:
    cores = run.get("cores") or {}
    if "machine" not in cores:
        return None
    sender = run["sender"]["cpu_s"] / max(1e-6, run["sender"]["elapsed_s"])
    ours = cores.get("receiver", 0) + cores.get("dispatcher", 0) + cores.get("kafka", 0) + sender
    return max(0.0, cores["machine"] - ours)


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def _verdict(ratio: Ratio) -> str:
    if ratio.met is None:
        return ratio.shortfall or "no target"
    return "met" if ratio.met else ratio.shortfall


def markdown(doc: dict[str, Any]) -> str:
    s = doc["scenarios"]
    machine = doc["machine"]
    lines = [
        f"# keventing benchmark — {doc['started']} ({doc['plan']})",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB; {machine['os']}; "
        f"Python {machine['python']}; Kafka {machine['kafka']} ({machine['kafka_mode']}); "
        f"receiver workers {doc['config']['receiver_workers']}, topic partitions {doc['config']['partitions']}; "
        f"load average before/after {machine['loadavg_before']} / {machine.get('loadavg_after', '—')}.",
        "",
        "## Ratios",
        "",
        "| ratio | value | target | verdict |",
        "|---|---:|---:|---|",
    ]
    for r in doc["ratios"]:
        lines.append(
            f"| {r['name']} | {_fmt(r['value'], 2)} | {r['target'] or '—'} | {_verdict(Ratio(**r))} |"
        )
    if "ingress" in s or "http_ceiling" in s:
        lines += ["", "## Ingress and HTTP ceiling (wrk, 1 KiB binary-mode events)", ""]
        lines += [
            "| connections | ingress events/s | p50 ms | p99 ms | errors | receiver µs CPU/event | ceiling req/s | ceiling p99 ms |"
        ]
        lines += ["|---:|---:|---:|---:|---:|---:|---:|---:|"]
        ing = {st["connections"]: st for st in s.get("ingress", {}).get("steps", [])}
        cei = {st["connections"]: st for st in s.get("http_ceiling", {}).get("steps", [])}
        for c in sorted(set(ing) | set(cei)):
            a, b = ing.get(c, {}), cei.get(c, {})
            lat, clat = a.get("latency_ms", {}), b.get("latency_ms", {})
            lines.append(
                f"| {c} | {_fmt(a.get('rate'))} | {_fmt(lat.get('p50'), 1)} | {_fmt(lat.get('p99'), 1)} | "
                f"{_fmt(a.get('errors'))} | {_fmt(a.get('receiver_cpu_us_per_event'), 0)} | {_fmt(b.get('rate'))} | "
                f"{_fmt(clat.get('p99'), 1)} |"
            )
        v = s.get("ingress", {}).get("verification")
        if v:
            lines += [
                "",
                f"Verification: receiver accepted {_fmt(v['accepted_by_receiver'])}, Kafka holds "
                f"{_fmt(v['stored_on_kafka'])} (exact: {v['exact']}); wrk saw {_fmt(v['accepted_seen_by_client'])} "
                f"202s (requests in flight when wrk stops are accepted but not seen); sampled records intact: "
                f"{v['sampled_records_intact']}.",
            ]
    if "kafka_ceiling" in s:
        k = s["kafka_ceiling"]
        lines += [
            "",
            f"Kafka ceiling (ProducerPerformance, {k['records']:,} × 1 KiB, acks=all): {_fmt(k['rate'])} records/s, "
            f"p50 {k['latency_ms']['p50']} ms, p99 {k['latency_ms']['p99']} ms.",
        ]
    if "end_to_end" in s:
        lines += ["", "## End to end (Broker → Trigger → sink, fixed offered rate)", ""]
        lines += [
            "| offered/s | sent/s | delivered/s | p50 ms | p99 ms | p99.9 ms | max ms | lost | duplicates "
            "| ingress p99 ms | sender lag max ms | other load (cores) | Kafka GC pauses (total, max ms) "
            "| events > 10 ms: in flight in a pause |"
        ]
        lines += ["|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for run in s["end_to_end"]["runs"]:
            lat, sender = run["latency_ms"], run["sender"]
            lines.append(
                f"| {run['offered_rate']:,} | {_fmt(sender['achieved_rate'])} | {_fmt(run['delivered_rate'])} | "
                f"{_fmt(lat['p50'], 1)} | {_fmt(lat['p99'], 1)} | {_fmt(lat['p99.9'], 1)} | {_fmt(lat['max'], 1)} | "
                f"{run['lost']} | {run['duplicates']} | {_fmt(sender['latency_ms']['p99'], 1)} | "
                f"{_fmt(sender['max_schedule_lag_ms'], 0)} | {_fmt(_other_load(run), 2)} | "
                f"{_gc_pauses(run.get('kafka_gc'))} | {_gc_share(run.get('kafka_gc'))} |"
            )
        lines += [
            "",
            "Ingress p99: the sender's own POST → 202 latency. Sender lag: how late the open-loop sender started "
            "a request (CPU starvation shows here first). Other load: cores the machine spent outside Kafka, the "
            "receiver, the dispatcher and the sender. Kafka GC pauses: the broker's stop-the-world collections "
            "while the rate ran (its GC log); the last column counts the events slower than 10 ms that were in "
            "flight while one lasted (not those late from the catch-up after it: the least the pauses explain).",
        ]
    if "drain" in s or "drain_baseline" in s:
        d, b = s.get("drain", {}), s.get("drain_baseline", {})
        lines += [
            "",
            "## Drain",
            "",
            "| consumer | events | events/s | CPU µs/event | lost |",
            "|---|---:|---:|---:|---:|",
        ]
        if d:
            lines.append(
                f"| dispatcher | {d['events']:,} | {_fmt(d['rate'])} | {_fmt(d['dispatcher_cpu_us_per_event'])} | {d['lost']} |"
            )
        if b:
            lines.append(
                f"| baseline (aiokafka + aiohttp) | {b['events']:,} | {_fmt(b['rate'])} | {_fmt(b['cpu_us_per_event'])} | {b['lost']} |"
            )
    if "fanout" in s:
        lines += ["", "## Fan-out (one matching Trigger, the others filter everything out)", ""]
        lines += [
            "| triggers | events | delivered/s | all groups done s | dispatcher CPU s | CPU µs/delivered event | idle cores |"
        ]
        lines += ["|---:|---:|---:|---:|---:|---:|---:|"]
        for row in s["fanout"]["rows"]:
            lines.append(
                f"| {row['triggers']} | {row['events']:,} | {_fmt(row['rate'])} | {row['all_groups_done_s']} | "
                f"{row['dispatcher_cpu_s']} | {_fmt(row['dispatcher_cpu_us_per_event'])} | {row['dispatcher_idle_cores']} |"
            )
    if "per_core" in s:
        lines += per_core_table(s["per_core"])
    if "eventtypes" in s:
        e = s["eventtypes"]
        lines += ["", "## `kev get eventtypes` at the auto-create bound (best of 3, start to exit)", ""]
        lines += [
            "| EventTypes | Brokers | get brokers -A s | get eventtypes -A s | one namespace s | ratio | controller RSS MiB |"
        ]
        lines += ["|---:|---:|---:|---:|---:|---:|---:|"]
        lines.append(
            f"| {e['eventtypes']:,} | {e['brokers']} | {e['get_brokers_s']} | {e['get_eventtypes_all_s']} | "
            f"{e['get_eventtypes_one_namespace_s']} | {e['ratio_all_to_brokers']} | {_fmt(e['controller_rss_mib'], 1)} |"
        )
    memory = doc.get("memory", {})
    if memory:
        lines += [
            "",
            "## Memory (peak RSS, MiB)",
            "",
            "| scenario | receiver | dispatcher |",
            "|---|---:|---:|",
        ]
        for name, peaks in memory.items():
            lines.append(
                f"| {name} | {_fmt(peaks.get('receiver'), 1)} | {_fmt(peaks.get('dispatcher'), 1)} |"
            )
    if doc.get("errors"):
        lines += ["", "## Scenarios that failed", ""]
        lines += [f"- {name}: {message.strip().splitlines()[-1]}" for name, message in doc["errors"].items()]
    if doc.get("filters"):
        lines += [
            "",
            doc["filters"].replace(
                "# Trigger filter throughput", "## Trigger filter throughput (bench/filters.py)"
            ),
        ]
    return "\n".join(lines) + "\n"


def plots(doc: dict[str, Any], prefix: Path) -> list[Path]:
    """throughput vs concurrency and latency percentiles, as PNGs; none when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    s = doc["scenarios"]
    written = []
    ing = s.get("ingress", {}).get("steps", [])
    cei = s.get("http_ceiling", {}).get("steps", [])
    if ing or cei:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for steps, label in ((ing, "ingress (receiver → Kafka)"), (cei, "HTTP ceiling (202, no Kafka)")):
            if steps:
                ax.plot(
                    [x["connections"] for x in steps], [x["rate"] for x in steps], marker="o", label=label
                )
        kafka = s.get("kafka_ceiling", {}).get("rate")
        if kafka:
            ax.axhline(kafka, linestyle="--", color="gray", label="Kafka ceiling (ProducerPerformance)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent connections")
        ax.set_ylabel("events/s")
        ax.set_title("Throughput vs concurrency")
        ax.grid(True, alpha=0.3)
        ax.legend()
        path = prefix.with_name(prefix.name + "-throughput.png")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    runs = s.get("end_to_end", {}).get("runs", [])
    if ing or runs:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        if ing:
            xs = [x["connections"] for x in ing]
            for key in ("p50", "p99", "p99.9"):
                axes[0].plot(xs, [x["latency_ms"].get(key) for x in ing], marker="o", label=key)
            axes[0].set_xscale("log", base=2)
            axes[0].set_xlabel("concurrent connections")
            axes[0].set_ylabel("ms")
            axes[0].set_title("Ingress latency (wrk)")
            axes[0].legend()
            axes[0].grid(True, alpha=0.3)
        if runs:
            xs = [r["offered_rate"] for r in runs]
            for key in ("p50", "p99", "p99.9"):
                axes[1].plot(xs, [r["latency_ms"].get(key) for r in runs], marker="o", label=key)
            axes[1].axhline(50, linestyle="--", color="gray", label="p99 target at 1,000/s")
            axes[1].set_xlabel("offered events/s")
            axes[1].set_ylabel("ms")
            axes[1].set_title("End-to-end latency (send → sink)")
            axes[1].legend()
            axes[1].grid(True, alpha=0.3)
        path = prefix.with_name(prefix.name + "-latency.png")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
