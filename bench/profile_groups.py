"""The share of a service's CPU samples per function group, from py-spy's collapsed stacks (``--format raw``).

Each sample goes to the innermost frame that belongs to a group (so asyncio work a module asks for, a future
or a timer, counts as that module's); a sample with only event-loop frames counts as the loop's own work.
``python -m bench.profile_groups receiver.txt`` prints the table the README's flame-graph paragraph quotes.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# (group, pattern on "function (file:line)"), innermost match wins; the order settles a frame matching two.
GROUPS: list[tuple[str, re.Pattern[str]]] = [
    (
        "metrics (prometheus-client)",
        re.compile(r"prometheus_client/|receiver/metrics\.py|IngressHandler\._count "),
    ),
    (
        "CloudEvent mapping and checks",
        re.compile(r"keventing/(events|tracing|eventtypes)\.py|receiver/ingress\.py|receiver/policy"),
    ),
    (
        "keventing batching (BatchProducer, record building)",
        re.compile(r"receiver/batching\.py|ReceiverApp\._produce |aiokafka/producer/message_accumulator\.py"),
    ),
    (
        "produce requests and responses (receiver/produce.py, aiokafka's client)",
        re.compile(r"receiver/produce\.py|aiokafka/"),
    ),
    (
        "HTTP answer (status line, headers, write)",
        re.compile(r"IngressCycle\.(_answer|_reply) |on_response_complete"),
    ),
    (
        "HTTP parsing and the request cycle",
        re.compile(r"receiver/protocol\.py|httptools|uvicorn/protocols/|receiver/app\.py"),
    ),
]
LOOP = "asyncio/uvloop (event loop, transports, tasks)"


def group_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, pattern in GROUPS:
            if pattern.search(frame):
                return name
    return LOOP


def shares(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not stack_text or not count.isdigit():
            continue
        counts[group_of(stack_text.split(";"))] += int(count)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collapsed", type=Path, nargs="+")
    args = parser.parse_args()
    for path in args.collapsed:
        counts = shares(path)
        total = sum(counts.values())
        print(f"{path.name}: {total} samples")
        for name, count in counts.most_common():
            print(f"  {100 * count / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
