"""Run the benchmarks: ``python -m bench.run [--quick | --smoke]`` (``make bench``, ``make bench-quick``).

Starts its own Kafka (the embedded one, or ``KAFKA_BOOTSTRAP_SERVERS``) and keventing stack, runs every
scenario, and writes ``<out>/<timestamp>.json``, ``<timestamp>.md`` and the PNG plots beside them. A scenario
that fails is recorded under ``errors`` and the others still run; the exit code is non-zero then.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import per_core, report, scenarios
from bench.harness import ROOT, Harness, remove, scratch_dir
from kev.kafka.embedded import kafka_version

SCENARIOS: dict[str, Callable[[Harness, scenarios.Plan], dict[str, Any]]] = {
    "ingress": scenarios.ingress,
    "http_ceiling": scenarios.http_ceiling,
    "kafka_ceiling": scenarios.kafka_ceiling,
    "end_to_end": scenarios.end_to_end,
    "drain": scenarios.drain,
    "drain_baseline": scenarios.drain_baseline,
    "fanout": scenarios.fanout,
    "per_core": per_core.per_core,
    "eventtypes": scenarios.eventtypes,
}


def machine(bootstrap_external: bool) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "kafka": kafka_version(),
        "kafka_mode": "KAFKA_BOOTSTRAP_SERVERS" if bootstrap_external else "embedded, same machine",
        "loadavg_before": _loadavg(),
    }


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _filters_table(args: tuple[str, ...]) -> str:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "filters.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="shorter steps and fewer events (under 3 minutes)")
    mode.add_argument("--smoke", action="store_true", help="tiny counts: checks that everything runs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where results go")
    parser.add_argument("--only", nargs="*", choices=list(SCENARIOS), help="run only these scenarios")
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("KEVENTING_RECEIVER_WORKERS", "1")),
        help="receiver worker processes",
    )
    parser.add_argument("--partitions", type=int, default=10, help="partitions of every Broker topic")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy flame graphs of the receiver and dispatcher in the per-core scenario",
    )
    args = parser.parse_args(argv)
    plan = scenarios.SMOKE if args.smoke else scenarios.QUICK if args.quick else scenarios.FULL
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    work = scratch_dir()
    harness = Harness(work, args.workers, args.partitions, lambda m: print(f"  {m}", flush=True))
    doc: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "plan": plan.name,
        "machine": machine(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))),
        "config": {"receiver_workers": args.workers, "partitions": args.partitions, "plan": plan.__dict__},
        "scenarios": {},
        "errors": {},
    }
    wall = time.monotonic()
    try:
        print(f"starting Kafka and keventing ({plan.name} run)…", flush=True)
        harness.start()
        for name, scenario in SCENARIOS.items():
            if args.only and name not in args.only:
                continue
            print(f"{name}…", flush=True)
            began = time.monotonic()
            try:
                if name == "per_core":
                    profiles = args.out / f"{stamp}-flamegraphs" if args.profile else None
                    doc["scenarios"][name] = per_core.per_core(harness, plan, profiles)
                else:
                    doc["scenarios"][name] = scenario(harness, plan)
            except Exception:
                doc["errors"][name] = traceback.format_exc()
                print(doc["errors"][name], file=sys.stderr, flush=True)
            print(f"{name}: {time.monotonic() - began:.0f} s", flush=True)
    except Exception:
        doc["errors"]["setup"] = traceback.format_exc()
        print(doc["errors"]["setup"], file=sys.stderr, flush=True)
    finally:
        harness.stop()
        remove(work)
    if plan.filters_args is not None and not args.only:
        try:
            doc["filters"] = _filters_table(plan.filters_args)
        except Exception:
            doc["errors"]["filters"] = traceback.format_exc()
    doc["machine"]["loadavg_after"] = _loadavg()
    doc["seconds"] = round(time.monotonic() - wall, 1)
    doc["memory"] = {
        name: result["peak_rss_mib"]
        for name, result in doc["scenarios"].items()
        if isinstance(result, dict) and "peak_rss_mib" in result
    }
    for row in doc["scenarios"].get("fanout", {}).get("rows", []):
        doc["memory"][f"fanout, {row['triggers']} triggers"] = row["peak_rss_mib"]
    doc["ratios"] = [r.as_dict() for r in report.ratios(doc["scenarios"])]
    args.out.mkdir(parents=True, exist_ok=True)
    prefix = args.out / stamp
    prefix.with_suffix(".json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    table = report.markdown(doc)
    prefix.with_suffix(".md").write_text(table)
    pngs = report.plots(doc, prefix)
    print(table)
    print(f"wrote {prefix.with_suffix('.json')}, {prefix.with_suffix('.md')}", *map(str, pngs), sep="\n  ")
    print(f"total {doc['seconds']:.0f} s")
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
