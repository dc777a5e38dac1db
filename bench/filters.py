"""In-process Trigger filter throughput: events/s through 1, 10 and 100 triggers of each dialect.

    python bench/filters.py [--events N] [--repeat R]

Every trigger is compiled once with ``compile_trigger_filter``; the timed loop only calls the compiled
filters on events whose attributes are strings, as they arrive from Kafka headers. A baseline loop that
does nothing but iterate the same events is timed in the same run; "vs baseline" is how many times slower
than that loop a row is. Each row is the best of ``--repeat`` runs. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keventing.filters import Filter, compile_trigger_filter  # noqa: E402

TYPES = [f"com.example.{noun}.{verb}" for noun in ("order", "user", "cart", "invoice") for verb in "abcde"]
SOURCES = [f"https://svc{i}.example.com/api" for i in range(8)]
SOURCES += [f"http://legacy{i}.example.org" for i in range(2)]
TRIGGER_COUNTS = (1, 10, 100)


def make_events(count: int, seed: int = 7) -> list[dict[str, str]]:
    rng = random.Random(seed)
    events = []
    for i in range(count):
        event = {
            "specversion": "1.0",
            "id": f"evt-{i}",
            "type": rng.choice(TYPES),
            "source": rng.choice(SOURCES),
            "time": "2024-05-01T12:00:00Z",
            "datacontenttype": "application/json",
        }
        if rng.random() < 0.7:
            event["region"] = rng.choice(("eu", "us", "ap"))
        events.append(event)
    return events


# Trigger i of each dialect; varied so that only some triggers match any given event.
def _type(i: int) -> str:
    return TYPES[i % len(TYPES)]


Spec = tuple[dict[str, str] | None, list[dict[str, Any]] | None]
DIALECTS: dict[str, Callable[[int], Spec]] = {
    "attributes": lambda i: ({"type": _type(i), "source": ""}, None),
    "exact": lambda i: (None, [{"exact": {"type": _type(i)}}]),
    "prefix": lambda i: (None, [{"prefix": {"source": SOURCES[i % len(SOURCES)][:14]}}]),
    "suffix": lambda i: (None, [{"suffix": {"type": "." + "abcde"[i % 5]}}]),
    "all": lambda i: (None, [{"all": [{"exact": {"type": _type(i)}}, {"prefix": {"source": "https://"}}]}]),
    "any": lambda i: (None, [{"any": [{"exact": {"type": _type(i)}}, {"exact": {"type": _type(i + 7)}}]}]),
    "not": lambda i: (None, [{"not": {"exact": {"type": _type(i)}}}]),
    "cesql": lambda i: (None, [{"cesql": f"type = '{_type(i)}' AND source LIKE 'https://%'"}]),
}


def _baseline(events: Sequence[dict[str, str]]) -> float:
    started = time.perf_counter()
    for _event in events:
        pass
    return time.perf_counter() - started


def _through(events: Sequence[dict[str, str]], filters: Sequence[Filter]) -> tuple[float, int]:
    hits = 0
    started = time.perf_counter()
    for event in events:
        for matches in filters:
            if matches(event):
                hits += 1
    return time.perf_counter() - started, hits


def _rate(value: float) -> str:
    return f"{value / 1e6:,.2f} M" if value >= 1e6 else f"{value / 1e3:,.1f} k"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000, help="events per run (default 30000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row, best one kept (default 3)")
    args = parser.parse_args(argv)
    events = make_events(args.events)

    baseline = min(_baseline(events) for _ in range(max(args.repeat, 5)))
    baseline_rate = len(events) / baseline
    print(f"# Trigger filter throughput ({platform.python_implementation()} {platform.python_version()})\n")
    print(
        f"{len(events):,} events per run, best of {args.repeat}; baseline loop: {_rate(baseline_rate)} events/s\n"
    )
    print("| dialect | triggers | events/s | ns per filter call | vs baseline | matches |")
    print("|---|---:|---:|---:|---:|---:|")
    for dialect, make in DIALECTS.items():
        for count in TRIGGER_COUNTS:
            filters = [compile_trigger_filter(*make(i)) for i in range(count)]
            elapsed, hits = min(_through(events, filters) for _ in range(args.repeat))
            rate = len(events) / elapsed
            per_call = elapsed / (len(events) * count) * 1e9
            share = hits / (len(events) * count)
            print(
                f"| {dialect} | {count} | {_rate(rate)} | {per_call:,.0f} | x{baseline_rate / rate:,.0f} "
                f"| {share:.0%} |"
            )


if __name__ == "__main__":
    main()
