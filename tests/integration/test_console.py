"""`kev console`'s HTTP API and live tail, `kev events` and `kev trace`, against a running stack on a real Kafka.

One namespace holds a Broker with three Triggers (one delivers, one's subscriber always fails into a
dead-letter Broker, one's filter selects nothing) and a Trigger whose Broker does not exist.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from conftest import Kev, Reaction, RecordingSink
from helpers import broker_doc, channel_doc, start_console, trigger_doc

from kev.stack import kev_command


@dataclass
class Mesh:
    ns: str
    console: str  # the console's base URL
    kev: Kev


def kev_env(kev: Kev) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kev.stack.bootstrap_servers,
        "KEVENTING_INSTANCE": kev.stack.instance,
        "COLUMNS": "250",
    }


def run_kev(kev: Kev, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*kev_command(), *args], env=kev_env(kev), capture_output=True, text=True, timeout=90
    )


@pytest.fixture(scope="module")
def mesh(kev: Kev, sink: RecordingSink) -> Iterator[Mesh]:
    ns = f"c{uuid.uuid4().hex[:10]}"
    sink.respond_with(f"{ns}/failing", lambda _: Reaction(status=500))
    dead_letter_sink = {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "dls"}}
    kev.apply(
        broker_doc("default", ns),
        broker_doc("dls", ns),
        trigger_doc("display", ns, "default", sink.url(f"{ns}/display")),
        trigger_doc(
            "failing",
            ns,
            "default",
            sink.url(f"{ns}/failing"),
            filter={"attributes": {"type": "dev.console.fail"}},
            delivery={"retry": 0, "deadLetterSink": dead_letter_sink},
        ),
        trigger_doc("picky", ns, "default", sink.url(f"{ns}/picky"), filter={"attributes": {"type": "none"}}),
        trigger_doc(
            "slow", ns, "default", sink.url(f"{ns}/slow"), filter={"attributes": {"type": "dev.console.slow"}}
        ),
        trigger_doc("orphan", ns, "missing", sink.url(f"{ns}/orphan")),
    )
    for name in ("display", "failing", "picky", "slow"):
        kev.wait_ready("Trigger", name, ns)
    name = f"console-{ns}"
    url = start_console(kev, name)
    try:
        yield Mesh(ns, url, kev)
    finally:
        kev.stack.stop(name)
        kev.stack.services.pop(name, None)


def wait_json(url: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        response = httpx.get(url, timeout=10)
        if response.status_code == 200:
            last = response.json()
            if check(last):
                return last
        time.sleep(0.3)
    raise AssertionError(f"{url} never satisfied the check; last answer: {last}")


def test_console_serves_health_metrics_and_a_page_with_the_topology(mesh: Mesh) -> None:
    assert httpx.get(f"{mesh.console}/healthz").text == "ok"
    assert "keventing_console_tails" in httpx.get(f"{mesh.console}/metrics").text
    page = httpx.get(f"{mesh.console}/", params={"namespace": mesh.ns})
    assert page.status_code == 200
    assert "<svg" in page.text and f'data-id="Broker/{mesh.ns}/default"' in page.text
    assert f'<option value="Broker/{mesh.ns}/default">' in page.text


def test_console_topology_shows_edges_ready_states_and_lag(mesh: Mesh) -> None:
    ns = mesh.ns

    def complete(graph: dict[str, Any]) -> bool:
        nodes = {n["id"]: n for n in graph["nodes"]}
        edge = next(
            (
                e
                for e in graph["edges"]
                if e["source"] == f"Broker/{ns}/default" and e["target"].endswith("display")
            ),
            None,
        )
        return (
            nodes.get(f"Trigger/{ns}/display", {}).get("ready") == "True"
            and nodes.get(f"Trigger/{ns}/orphan", {}).get("ready") == "False"
            and edge is not None
            and edge["lag"] is not None
        )

    graph = wait_json(f"{mesh.console}/api/topology?namespace={ns}", complete)
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert nodes[f"Broker/{ns}/default"]["column"] == 1
    assert nodes[f"Trigger/{ns}/display"]["column"] == 2
    assert nodes[f"Broker/{ns}/missing"]["ready"] == "False"  # the orphan's Broker, shown as missing
    assert "does not exist" in nodes[f"Trigger/{ns}/orphan"]["reason"]
    roles = {(e["source"], e["target"]): e["role"] for e in graph["edges"]}
    assert roles[(f"Trigger/{ns}/failing", f"Broker/{ns}/dls")] == "dead-letter"
    assert all(n["namespace"] in (ns, "") for n in graph["nodes"])
    resources = httpx.get(f"{mesh.console}/api/resources", params={"namespace": ns}).json()["items"]
    orphan = next(r for r in resources if r["metadata"]["name"] == "orphan")
    assert any(c["type"] == "BrokerReady" and c["status"] == "False" for c in orphan["status"]["conditions"])


def read_sse(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    kind, data = "message", ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            yield kind, json.loads(data)
            kind, data = "message", ""


def test_live_tail_streams_only_the_events_its_cesql_filter_selects(mesh: Mesh) -> None:
    ns = mesh.ns
    hit, miss = f"hit-{uuid.uuid4().hex[:6]}", f"miss-{uuid.uuid4().hex[:6]}"
    params = {"target": f"Broker/{ns}/default", "filter": "type = 'dev.console.hit'"}
    with httpx.stream("GET", f"{mesh.console}/api/events", params=params, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = read_sse(response)
        assert next(stream) == ("ready", {"topic": f"knative-broker-{ns}-default"})
        assert mesh.kev.send(ns, "default", miss, "dev.console.miss").status_code == 202
        assert mesh.kev.send(ns, "default", hit, "dev.console.hit").status_code == 202
        kind, event = next(stream)
    assert kind == "message"
    assert event["attributes"]["id"] == hit  # the miss, sent first, was filtered out
    # The client went away: the tail's consumer is closed and no longer counted.
    mesh.kev.wait_for(
        lambda: "keventing_console_tails 0.0" in httpx.get(f"{mesh.console}/metrics").text,
        10,
        "the closed tail to be released",
    )
    assert event["topic"] == f"knative-broker-{ns}-default"
    assert event["data"] == '{"hello":"world"}'


def test_live_tail_refuses_a_bad_filter_and_an_unknown_broker(mesh: Mesh) -> None:
    bad = httpx.get(
        f"{mesh.console}/api/events", params={"target": f"Broker/{mesh.ns}/default", "filter": "type ="}
    )
    assert bad.status_code == 400
    assert "invalid CESQL filter" in bad.json()["error"]
    assert httpx.get(f"{mesh.console}/api/filter", params={"expression": "type LIKE 'a%'"}).status_code == 200
    unknown = httpx.get(f"{mesh.console}/api/events", params={"target": f"Broker/{mesh.ns}/nope"})
    assert unknown.status_code == 404
    assert "Broker/" in unknown.json()["error"]


def test_dead_letters_show_up_in_the_console_and_in_kev_trace(mesh: Mesh, sink: RecordingSink) -> None:
    ns = mesh.ns
    failed = f"fail-{uuid.uuid4().hex[:6]}"
    assert mesh.kev.send(ns, "default", failed, "dev.console.fail").status_code == 202
    sink.wait_for(f"{ns}/failing", 1)

    def has_it(body: dict[str, Any]) -> bool:
        item = next((i for i in body["items"] if i["egress"] == f"Trigger/{ns}/failing"), None)
        return item is not None and any(e["attributes"]["id"] == failed for e in item["events"])

    body = wait_json(f"{mesh.console}/api/deadletters?namespace={ns}", has_it)
    item = next(i for i in body["items"] if i["egress"] == f"Trigger/{ns}/failing")
    assert item["topic"] == f"knative-broker-{ns}-dls"
    copy = next(e for e in item["events"] if e["attributes"]["id"] == failed)
    assert copy["attributes"]["knativeerrorcode"] == "500"

    # The display Trigger delivered it (its group commits past it), the picky one filtered it out.
    def traced() -> dict[str, str] | None:
        result = run_kev(mesh.kev, "trace", failed, "-n", ns, "-o", "json")
        assert result.returncode == 0, result.stderr
        states = {h["egress"]: h["state"] for h in json.loads(result.stdout)[0]["hops"]}
        return states if states.get(f"Trigger/{ns}/display") == "done" else None

    states = mesh.kev.wait_for(traced, 30, "the display Trigger to commit past the event")
    assert states == {
        f"Trigger/{ns}/display": "done",
        f"Trigger/{ns}/failing": "dead-lettered",
        f"Trigger/{ns}/picky": "filtered",
        f"Trigger/{ns}/slow": "filtered",
    }
    table = run_kev(mesh.kev, "trace", failed, "--broker", "default", "-n", ns)
    assert table.returncode == 0, table.stderr
    assert "dead-lettered" in table.stdout and f"knative-broker-{ns}-dls" in table.stdout


def test_kev_trace_of_an_unknown_event_fails_saying_so(mesh: Mesh) -> None:
    result = run_kev(mesh.kev, "trace", "no-such-event", "--broker", "default", "-n", mesh.ns)
    assert result.returncode == 1
    assert 'event "no-such-event" not found' in result.stderr
    missing = run_kev(mesh.kev, "trace", "x", "--broker", "nope", "-n", mesh.ns)
    assert missing.returncode == 1 and "has no topic in the contract" in missing.stderr


def test_kev_events_lists_and_filters_a_brokers_events(mesh: Mesh) -> None:
    ns = mesh.ns
    ids = [f"list-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    for i, event_id in enumerate(ids):
        assert mesh.kev.send(ns, "default", event_id, f"dev.console.list{i}").status_code == 202
    listed = run_kev(mesh.kev, "events", "--broker", "default", "-n", ns, "--last", "50", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    seen = [json.loads(line)["attributes"]["id"] for line in listed.stdout.splitlines()]
    assert set(ids) <= set(seen)
    only = run_kev(
        mesh.kev, "events", "-b", "default", "-n", ns, "--filter", "type = 'dev.console.list1'", "-o", "json"
    )
    assert [json.loads(line)["attributes"]["id"] for line in only.stdout.splitlines()] == [ids[1]]
    table = run_kev(mesh.kev, "events", "-b", "default", "-n", ns, "--last", "50")
    assert "PARTITION/OFFSET" in table.stdout and ids[2] in table.stdout
    bad = run_kev(mesh.kev, "events", "-b", "default", "-n", ns, "--filter", "type = ")
    assert bad.returncode == 1 and "--filter" in bad.stderr


def test_kev_events_follow_prints_events_as_they_arrive(mesh: Mesh) -> None:
    ns = mesh.ns
    event_id = f"follow-{uuid.uuid4().hex[:6]}"
    process = subprocess.Popen(
        [*kev_command(), "events", "-b", "default", "-n", ns, "--last", "0", "--follow", "-o", "json"],
        env=kev_env(mesh.kev),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None and process.stdout is not None
        assert "following knative-broker-" in process.stderr.readline()
        assert mesh.kev.send(ns, "default", event_id, "dev.console.follow").status_code == 202
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=20), "no event printed within 20 s"
        assert json.loads(process.stdout.readline())["attributes"]["id"] == event_id
    finally:
        process.terminate()
        process.wait(10)


def test_kev_events_reads_a_channels_topic(mesh: Mesh) -> None:
    ns = mesh.ns
    mesh.kev.apply(channel_doc("orders", ns))
    channel = mesh.kev.wait_ready("Channel", "orders", ns)
    assert channel.status.address is not None and channel.status.address.url
    event_id = f"chan-{uuid.uuid4().hex[:6]}"
    response = mesh.kev.http.post(
        channel.status.address.url,
        headers={
            "ce-specversion": "1.0",
            "ce-id": event_id,
            "ce-type": "dev.console.chan",
            "ce-source": "/t",
        },
        content=b"{}",
    )
    assert response.status_code == 202
    listed = run_kev(mesh.kev, "events", "--channel", "orders", "-n", ns, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["attributes"]["id"] for line in listed.stdout.splitlines()] == [event_id]
    nope = run_kev(mesh.kev, "events", "--channel", "nope", "-n", ns)
    assert nope.returncode == 1 and "KafkaChannel or InMemoryChannel" in nope.stderr


def test_kev_trace_shows_an_event_in_delivery_as_pending_then_done(mesh: Mesh, sink: RecordingSink) -> None:
    ns = mesh.ns
    event_id = f"slow-{uuid.uuid4().hex[:6]}"
    sink.program(f"{ns}/slow", Reaction(delay=6.0))
    assert mesh.kev.send(ns, "default", event_id, "dev.console.slow").status_code == 202
    sink.wait_for(f"{ns}/slow", 1)  # the subscriber has it and takes its time answering

    def state() -> str:
        result = run_kev(mesh.kev, "trace", event_id, "-b", "default", "-n", ns, "-o", "json")
        assert result.returncode == 0, result.stderr
        return {h["egress"]: h["state"] for h in json.loads(result.stdout)[0]["hops"]}[f"Trigger/{ns}/slow"]

    assert state() == "pending"
    mesh.kev.wait_for(lambda: state() == "done", 30, "the slow Trigger to commit past the event")
