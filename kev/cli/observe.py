"""``kev events`` and ``kev trace``: a Broker's events, and one event's path, for a terminal.

The reading is :mod:`kev.tail` and :mod:`kev.eventpath`; this module resolves what the user named into
contract entries and prints tables (or JSON lines with ``-o json``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from kev.eventpath import (
    Hop,
    committed_offsets,
    connection_of,
    dead_letter_ingress,
    egresses_on,
    failed_destination,
    hops,
    load_contract,
)
from kev.tail import TailedEvent, find_event, recent, tail
from keventing.contract import ContractEntry, Ingress
from keventing.filters import Filter
from keventing.settings import CommonSettings

console = Console()
err_console = Console(stderr=True)


class NotFound(Exception):
    """What the user named is not in the contract (or the event is on no topic); the message says what."""


def resolve_ingress(
    contract: dict[str, ContractEntry], kinds: tuple[str, ...], namespace: str, name: str
) -> Ingress:
    """The ingress of the first of ``kinds`` named ``name`` (a Channel's backing channel has its name)."""
    for kind in kinds:
        entry = contract.get(f"{kind}/{namespace}/{name}")
        if entry is not None and entry.ingress is not None and entry.ingress.topic:
            return entry.ingress
    raise NotFound(
        f'{" or ".join(kinds)} "{name}" in namespace "{namespace}" has no topic in the contract '
        "(does it exist, is it Ready, and is `kev controller` running?)"
    )


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _data(event: TailedEvent, limit: int = 60) -> str:
    if event.data is None:
        return ""
    text = event.data[: limit * 4].decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def event_row(event: TailedEvent) -> list[str]:
    a = event.attributes
    return [
        _time(event.timestamp_ms),
        f"{event.partition}/{event.offset}",
        a.get("id", ""),
        a.get("type", ""),
        a.get("source", ""),
        _data(event),
    ]


EVENT_COLUMNS = ("TIME", "PARTITION/OFFSET", "ID", "TYPE", "SOURCE", "DATA")


def print_events(found: list[TailedEvent]) -> None:
    if not found:
        console.print("No events.")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in EVENT_COLUMNS:
        table.add_column(column, overflow="fold")
    for event in found:
        table.add_row(*event_row(event))
    console.print(table)


def print_json_line(payload: Any) -> None:
    sys.stdout.write(orjson.dumps(payload).decode() + "\n")
    sys.stdout.flush()


async def show_events(
    settings: CommonSettings,
    target: tuple[tuple[str, ...], str, str],
    matches: Filter | None,
    last: int,
    follow: bool,
    json_lines: bool,
) -> None:
    """Print the target's last ``last`` events; with ``follow``, every event from then on (Ctrl-C stops)."""
    ingress = resolve_ingress(await load_contract(settings), *target)
    connection = connection_of(settings, ingress.connection)
    if not follow:
        found = await recent(connection, ingress.topic, last, matches)
        if json_lines:
            for event in found:
                print_json_line(event.to_json())
        else:
            print_events(found)
        return

    async def announce() -> None:
        # On stderr, so that -o json's output stays one event per line; printed once nothing can be missed.
        err_console.print(f"following {ingress.topic} (Ctrl-C stops)", style="dim", highlight=False)

    if not json_lines:
        console.print("  ".join(EVENT_COLUMNS), style="bold", highlight=False)
    async for event in tail(connection, ingress.topic, matches, last=last, on_ready=announce):
        if json_lines:
            print_json_line(event.to_json())
        else:
            console.print("  ".join(event_row(event)), markup=False, highlight=False, soft_wrap=True)


@dataclass
class Trace:
    """One record of the event on a Broker's topic, and what each of the Broker's egresses did with it."""

    ingress: Ingress
    record: TailedEvent
    hops: list[Hop]


async def trace_event(
    settings: CommonSettings,
    event_id: str,
    brokers: Callable[[dict[str, ContractEntry]], list[Ingress]],
) -> list[Trace]:
    """Find ``event_id`` on the topics of the Brokers ``brokers`` picks from the contract and follow it."""
    contract = await load_contract(settings)
    traces = []
    for ingress in brokers(contract):
        connection = connection_of(settings, ingress.connection)
        for record in await find_event(connection, ingress.topic, event_id):
            egresses = egresses_on(contract, ingress.topic)
            committed = await committed_offsets(connection, sorted({e.consumer_group for e in egresses}))
            dead_lettered: dict[str, bool] = {}
            dead_letter_topics: dict[str, str] = {}
            for egress in egresses:
                sink = dead_letter_ingress(contract, egress.delivery.dead_letter_url)
                if sink is None:
                    continue
                dead_letter_topics[egress.id] = sink.topic
                copies = await find_event(connection_of(settings, sink.connection), sink.topic, event_id)
                # A dead-letter topic may serve several Triggers: the copy names the subscriber that failed.
                dead_lettered[egress.id] = any(
                    failed_destination(c.attributes) in (None, egress.destination) for c in copies
                )
            found = hops(
                egresses,
                record.attributes,
                record.topic,
                record.partition,
                record.offset,
                committed,
                dead_lettered,
                dead_letter_topics,
            )
            traces.append(Trace(ingress, record, found))
    return traces


STATE_STYLE = {
    "filtered": "dim",
    "pending": "yellow",
    "done": "green",
    "dead-lettered": "red",
    "not-positioned": "yellow",
    "invalid-filter": "red",
}


def print_traces(traces: list[Trace]) -> None:
    for trace in traces:
        r = trace.record
        a = r.attributes
        console.print(
            f"[bold]event {a.get('id', '')}[/bold]  type {a.get('type', '')}  source {a.get('source', '')}",
            highlight=False,
        )
        console.print(
            f"  {trace.ingress.kind} {trace.ingress.namespace}/{trace.ingress.name}: topic {r.topic}, "
            f"partition {r.partition}, offset {r.offset}, written {_time(r.timestamp_ms)}",
            markup=False,
            highlight=False,
        )
        if not trace.hops:
            console.print("  no Trigger reads this topic")
            continue
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("EGRESS", "FILTER", "GROUP", "COMMITTED", "STATE", "DEAD LETTER TOPIC", "WHY"):
            table.add_column(column)
        for hop in trace.hops:
            selects = {True: "matches", False: "no match", None: "-"}[hop.matches]
            style = STATE_STYLE[hop.state]
            table.add_row(
                hop.egress.id,
                selects,
                hop.egress.consumer_group,
                "-" if hop.committed is None else str(hop.committed),
                f"[{style}]{hop.state}[/{style}]",
                hop.dead_letter_topic or "-",
                hop.explanation,
            )
        console.print(table)


def trace_json(traces: list[Trace]) -> list[dict[str, Any]]:
    return [
        {
            "ingress": t.ingress.id,
            "record": t.record.to_json(),
            "hops": [
                {
                    "egress": h.egress.id,
                    "group": h.egress.consumer_group,
                    "matches": h.matches,
                    "committed": h.committed,
                    "state": h.state,
                    "dead_letter_topic": h.dead_letter_topic,
                }
                for h in t.hops
            ],
        }
        for t in traces
    ]


def brokers_named(
    namespace: str | None, name: str | None
) -> Callable[[dict[str, ContractEntry]], list[Ingress]]:
    """The Broker ``name`` in ``namespace``, or every Broker of ``namespace`` (of every one: None)."""

    def pick(contract: dict[str, ContractEntry]) -> list[Ingress]:
        if name is not None:
            return [resolve_ingress(contract, ("Broker",), namespace or "default", name)]
        found = [
            e.ingress
            for e in contract.values()
            if e.ingress is not None
            and e.ingress.kind == "Broker"
            and e.ingress.topic
            and (namespace is None or e.ingress.namespace == namespace)
        ]
        return sorted(found, key=lambda i: i.id)

    return pick
