"""PingSource (driven clock, several runners), ContainerSource and SinkBinding on the running stack."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from conftest import Kev, RecordingSink
from helpers import (
    broker_doc,
    container_source_doc,
    ping_source_doc,
    sink_binding_doc,
    sink_ref,
    trigger_doc,
)

from kev.kafka.embedded import free_port
from kev.stack import Service, kev_command

T0 = "2030-01-01T00:00:30+00:00"  # half a minute before the first tick of "* * * * *"


def _runner_url(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


def _clock(kev: Kev, port: int, **body: object) -> dict:
    response = kev.http.post(_runner_url(port, "/clock"), json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _described(kev: Kev, port: int) -> dict:
    return kev.http.get(_runner_url(port, "/sources")).json()


def _wait_scheduled(kev: Kev, ports: list[int], ids: set[str]) -> dict[int, set[str]]:
    """Wait until the runners' schedules hold exactly ``ids`` among them, each on one runner only."""

    def placed() -> dict[int, set[str]] | None:
        found = {port: {p["id"] for p in _described(kev, port)["pings"]} & ids for port in ports}
        everywhere = [i for s in found.values() for i in s]
        return found if sorted(everywhere) == sorted(ids) else None

    return kev.wait_for(placed, timeout=30, what=f"{len(ids)} PingSources to be scheduled")


@pytest.fixture
def runner_port(kev: Kev) -> int:
    return kev.stack.sources_port


def test_ping_source_sends_one_event_per_tick_with_its_data_and_overrides(
    kev: Kev, sink: RecordingSink, ns: str, runner_port: int
) -> None:
    kev.apply(
        ping_source_doc(
            "heartbeat",
            ns,
            {"uri": sink.url(f"{ns}/ping")},
            schedule="* * * * *",
            contentType="application/json",
            data='{"message": "Hello world!"}',
            ceOverrides={"extensions": {"team": "blue"}},
        )
    )
    source = kev.wait_ready("PingSource", "heartbeat", ns)
    assert source.status.sinkUri == sink.url(f"{ns}/ping")
    _wait_scheduled(kev, [runner_port], {f"PingSource/{ns}/heartbeat"})
    try:
        _clock(kev, runner_port, now=T0)
        fired = [_clock(kev, runner_port, advance=60)["fired"] for _ in range(3)]
        assert fired == [1, 1, 1]
        received = sink.wait_for(f"{ns}/ping", 3)
        time.sleep(0.5)  # nothing more may arrive
        assert len(sink.requests(f"{ns}/ping")) == 3
        for request in received:
            event = request.event
            assert event is not None
            assert event.type == "dev.knative.sources.ping"
            assert event.source == f"/apis/v1/namespaces/{ns}/pingsources/heartbeat"
            assert event.attributes["datacontenttype"] == "application/json"
            assert event.attributes["team"] == "blue"
            assert request.body == b'{"message": "Hello world!"}'
        assert len({r.event.id for r in received if r.event}) == 3
        assert sorted(r.event.attributes["time"] for r in received if r.event) == [
            "2030-01-01T00:01:00Z",
            "2030-01-01T00:02:00Z",
            "2030-01-01T00:03:00Z",
        ]
    finally:
        kev.delete("PingSource", "heartbeat", ns)


def test_ping_source_to_a_broker_with_base64_data(
    kev: Kev, sink: RecordingSink, ns: str, runner_port: int
) -> None:
    kev.apply(
        broker_doc("default", ns),
        trigger_doc("pings", ns, "default", sink.url(f"{ns}/via-broker")),
        ping_source_doc(
            "binary",
            ns,
            sink_ref("Broker", "default"),
            schedule="*/5 * * * *",
            contentType="application/octet-stream",
            dataBase64="AAEC/w==",
        ),
    )
    kev.wait_ready("Trigger", "pings", ns)
    kev.wait_ready("PingSource", "binary", ns)
    _wait_scheduled(kev, [runner_port], {f"PingSource/{ns}/binary"})
    try:
        _clock(kev, runner_port, now=T0)
        assert _clock(kev, runner_port, advance=60)["fired"] == 0  # 00:01:30: not a five-minute tick
        assert _clock(kev, runner_port, advance=240)["fired"] == 1  # 00:05:30
        request = sink.wait_for(f"{ns}/via-broker", 1)[0]
        assert request.body == b"\x00\x01\x02\xff"
        assert request.headers["content-type"] == "application/octet-stream"
    finally:
        kev.delete("PingSource", "binary", ns)


def test_two_runners_send_each_tick_exactly_once(
    kev: Kev, sink: RecordingSink, ns: str, runner_port: int
) -> None:
    second_port = free_port()
    second = Service(
        f"sources-{ns}",
        [*kev_command(), "sources"],
        _runner_url(second_port, "/readyz"),
        {"KEVENTING_SOURCES_PORT": str(second_port)},
    )
    kev.stack.start(second)
    names = [f"p{i}" for i in range(12)]
    try:
        kev.stack.wait_ready(60, [second.name])
        ports = [runner_port, second_port]
        # Both runners share the assignment partitions once the group has rebalanced.
        kev.wait_for(
            lambda: (
                all(_described(kev, p)["owned_partitions"] for p in ports)
                and sum(len(_described(kev, p)["owned_partitions"]) for p in ports)
                == _described(kev, runner_port)["partitions"]
            ),
            timeout=30,
            what="the two runners to share the partitions",
        )
        kev.apply(*(ping_source_doc(n, ns, {"uri": sink.url(f"{ns}/{n}")}) for n in names))
        for name in names:
            kev.wait_ready("PingSource", name, ns)
        placed = _wait_scheduled(kev, ports, {f"PingSource/{ns}/{n}" for n in names})
        assert all(placed.values()), "each runner schedules some of the sources"
        for port in ports:
            _clock(kev, port, now=T0)
        fired = Counter()
        for _ in range(2):
            for port in ports:
                fired[port] += _clock(kev, port, advance=60)["fired"]
        assert fired[runner_port] == 2 * len(placed[runner_port])
        assert fired[second_port] == 2 * len(placed[second_port])
        for name in names:
            sink.wait_for(f"{ns}/{name}", 2)
        time.sleep(0.5)
        assert {name: len(sink.requests(f"{ns}/{name}")) for name in names} == dict.fromkeys(names, 2)
    finally:
        for name in names:
            kev.delete("PingSource", name, ns)
        kev.stack.stop(second.name)
        kev.stack.services.pop(second.name, None)
    # The session's runner owns everything again before the next test.
    kev.wait_for(
        lambda: (
            len(_described(kev, runner_port)["owned_partitions"])
            == _described(kev, runner_port)["partitions"]
        ),
        timeout=30,
        what="the remaining runner to take every partition back",
    )


CONTAINER_PROGRAM = """
import json, os, urllib.request
extensions = json.loads(os.environ.get("K_CE_OVERRIDES", "{}")).get("extensions", {})
for i in range(3):
    headers = {
        "ce-specversion": "1.0",
        "ce-id": f"{os.getpid()}-{i}",
        "ce-type": "dev.test.container",
        "ce-source": "/container",
        "content-type": "application/json",
        **{f"ce-{name}": value for name, value in extensions.items()},
    }
    body = json.dumps({"i": i}).encode()
    urllib.request.urlopen(urllib.request.Request(os.environ["K_SINK"], body, headers, method="POST")).read()
print("sent three events to", os.environ["K_SINK"], "as", os.environ["GREETING"])
"""


def test_container_source_program_delivers_its_events_and_is_restarted_when_it_exits(
    kev: Kev, sink: RecordingSink, ns: str, runner_port: int
) -> None:
    kev.apply(
        broker_doc("default", ns),
        trigger_doc("all", ns, "default", sink.url(f"{ns}/container")),
        container_source_doc(
            "heartbeats",
            ns,
            sink_ref("Broker", "default"),
            [sys.executable, "-c", CONTAINER_PROGRAM],
            env=[{"name": "GREETING", "value": "hello"}],
            ceOverrides={"extensions": {"team": "green"}},
        ),
    )
    kev.wait_ready("Trigger", "all", ns)
    source = kev.wait_ready("ContainerSource", "heartbeats", ns)
    assert source.status.sinkUri == kev.broker_url(ns, "default")
    source_id = f"ContainerSource/{ns}/heartbeats"
    try:
        # Three events per run; a second run's events show that the exited process was restarted.
        received = sink.wait_for(f"{ns}/container", 6, timeout=30)
        events = [r.event for r in received if r.event is not None]
        assert {e.type for e in events} == {"dev.test.container"}
        assert {e.attributes["team"] for e in events} == {"green"}
        runs = Counter(e.id.split("-")[0] for e in events)
        assert len(runs) >= 2 and all(count <= 3 for count in runs.values())
        described = _described(kev, runner_port)["containers"]
        assert [c["id"] for c in described] == [source_id] and described[0]["restarts"] >= 1
        log = Path(kev.stack.services["sources"].log_path or "").read_text(errors="replace")
        assert f"sent three events to {kev.broker_url(ns, 'default')}" in log
    finally:
        kev.delete("ContainerSource", "heartbeats", ns)
    kev.wait_for(
        lambda: not _described(kev, runner_port)["containers"], timeout=20, what="the process to be stopped"
    )
    settled = len(sink.requests(f"{ns}/container"))
    time.sleep(2.5)  # longer than the restart backoff: a process still running would have sent more
    assert len(sink.requests(f"{ns}/container")) == settled


def test_kev_run_with_a_sink_binding_gives_the_program_k_sink_and_k_ce_overrides(kev: Kev, ns: str) -> None:
    kev.apply(
        sink_binding_doc(
            "bound",
            ns,
            {"uri": "http://example.com/events"},
            subject={"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
            ceOverrides={"extensions": {"env": "test"}},
        )
    )
    kev.wait_ready("SinkBinding", "bound", ns)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kev.stack.bootstrap_servers,
        "KEVENTING_INSTANCE": kev.stack.instance,
    }
    program = "import os; print(os.environ['K_SINK']); print(os.environ['K_CE_OVERRIDES'])"
    result = subprocess.run(
        [*kev_command(), "run", "--binding", "bound", "-n", ns, "--", sys.executable, "-c", program],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["http://example.com/events", '{"extensions":{"env":"test"}}']
    missing = subprocess.run(
        [*kev_command(), "run", "--binding", "absent", "-n", ns, "--", "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_the_manual_clock_only_moves_forward(kev: Kev, runner_port: int) -> None:
    response = httpx.post(_runner_url(runner_port, "/clock"), json={"advance": -5}, timeout=10)
    assert response.status_code == 400
    assert "only moves forward" in response.json()["error"]


def test_a_timer_integration_source_sends_its_message_every_period_up_to_its_repeat_count(
    kev: Kev, sink: RecordingSink, ns: str, runner_port: int
) -> None:
    kev.apply(
        broker_doc("default", ns),
        trigger_doc("timers", ns, "default", sink.url(f"{ns}/timer")),
        {
            "apiVersion": "sources.knative.dev/v1alpha1",
            "kind": "IntegrationSource",
            "metadata": {"name": "tick", "namespace": ns},
            "spec": {
                "timer": {"period": 1000, "message": "Hello timer", "repeatCount": 2},
                "sink": sink_ref("Broker", "default"),
                "ceOverrides": {"extensions": {"team": "blue"}},
            },
        },
    )
    kev.wait_ready("Trigger", "timers", ns)
    source = kev.wait_ready("IntegrationSource", "tick", ns)
    assert source.status.sinkUri == kev.broker_url(ns, "default")
    _wait_scheduled(kev, [runner_port], {f"IntegrationSource/{ns}/tick"})
    try:
        _clock(kev, runner_port, now=T0)
        fired = [_clock(kev, runner_port, advance=1)["fired"] for _ in range(3)]
        assert fired == [1, 1, 0]  # twice, then its repeatCount is spent
        received = sink.wait_for(f"{ns}/timer", 2)
        for request in received:
            event = request.event
            assert event is not None
            assert (event.type, event.source, event.attributes["subject"]) == (
                "dev.knative.connector.event.timer",
                "dev.knative.eventing.timer-source",
                "timer-source",
            )
            assert (request.body, event.attributes["team"]) == (b"Hello timer", "blue")
            assert request.headers["content-type"] == "text/plain"
    finally:
        kev.delete("IntegrationSource", "tick", ns)
