"""PingSource, ContainerSource and SinkBinding: validation, reconciliation, the scheduler, the supervisor's math."""

from __future__ import annotations

import asyncio
import base64
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import yaml
from helpers import broker_doc, container_source_doc, ping_source_doc, sink_binding_doc, sink_ref

from controller.reconciler import ControllerConfig, reconcile
from keventing import events
from keventing.binding import binding_env, expand
from keventing.contract import ContainerProcess, ContractEntry, PingSchedule, Source, TimerSchedule
from keventing.cron import InvalidSchedule, parse_schedule
from keventing.ownership import partition_for
from keventing.resources import ResourceInvalid, ResourceKey, parse_resource
from sources.clock import ManualClock
from sources.containers import Backoff
from sources.ping import PingScheduler, ping_event
from sources.runner import SourceRunner
from sources.settings import SourcesSettings

CONFIG = ControllerConfig(ingress_url="http://localhost:8080")
SINK = {"uri": "http://sink.example/ping"}


def _reconcile(*documents: dict):
    return reconcile([parse_resource(d) for d in documents], CONFIG)


# ------------------------------------------------------------------------------------------ validation


def test_ping_source_defaults_to_every_minute() -> None:
    source = parse_resource(ping_source_doc("p", "ns", SINK))
    assert source.spec.schedule == "* * * * *"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"data": "x", "dataBase64": "eA=="}, "spec"),
        ({"schedule": "61 * * * *"}, "spec.schedule"),
        ({"schedule": "@every 1m"}, "spec.schedule"),
        ({"schedule": "* * * * * *"}, "spec.schedule"),
        ({"timezone": "Mars/Olympus"}, "spec.timezone"),
        ({"contentType": "application/json", "data": "not json"}, "spec.data"),
        ({"dataBase64": "%%%"}, "spec.dataBase64"),
        (
            {"contentType": "application/json", "dataBase64": base64.b64encode(b"[1]").decode()},
            "spec.dataBase64",
        ),
        ({"ceOverrides": {"extensions": {"Bad-Name": "x"}}}, "spec.ceOverrides.extensions.Bad-Name"),
    ],
)
def test_invalid_ping_source_is_rejected_at_apply_time(spec: dict, field: str) -> None:
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(ping_source_doc("p", "ns", SINK, **spec))
    assert err.value.field == field


def test_knative_schedule_language_is_accepted() -> None:
    for schedule in ("* * * * ?", "@hourly", "CRON_TZ=Europe/Paris 0 9 * * 1-5", "*/5 * * * *"):
        parse_resource(ping_source_doc("p", "ns", SINK, schedule=schedule))


def test_schedule_in_a_time_zone_ticks_at_local_time() -> None:
    schedule = parse_schedule("0 9 * * *", "Europe/Paris")
    tick = schedule.next_after(datetime(2024, 7, 1, 12, 0, tzinfo=UTC))
    assert tick == datetime(2024, 7, 2, 7, 0, tzinfo=UTC)  # 09:00 CEST


def test_bad_time_zone_names_the_timezone_field() -> None:
    with pytest.raises(InvalidSchedule) as err:
        parse_schedule("* * * * *", "Nowhere/Land")
    assert err.value.field == "timezone"


def test_container_source_needs_a_container() -> None:
    document = container_source_doc("c", "ns", SINK, ["true"])
    document["spec"]["template"]["spec"]["containers"] = []
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(document)
    assert err.value.field == "spec.template.spec.containers"


def test_sink_binding_subject_must_be_in_its_namespace() -> None:
    document = sink_binding_doc(
        "b", "ns", SINK, subject={"apiVersion": "v1", "kind": "Pod", "namespace": "x"}
    )
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(document)
    assert err.value.field == "spec.subject.namespace"


# ---------------------------------------------------------------------------------------- reconcile


def test_ping_source_resolves_its_broker_sink_and_enters_the_contract() -> None:
    desired = _reconcile(
        broker_doc("default", "ns"),
        ping_source_doc(
            "p",
            "ns",
            sink_ref("Broker", "default"),
            schedule="*/2 * * * *",
            timezone="Europe/Paris",
            contentType="text/plain",
            data="hello",
            ceOverrides={"extensions": {"team": "a"}},
        ),
    )
    status = desired.statuses[ResourceKey("PingSource", "ns", "p")]
    assert status.ready
    assert status.sinkUri == "http://localhost:8080/ns/default"
    assert [c.type for c in status.conditions] == ["Ready", "SinkProvided", "Deployed"]
    assert status.ceAttributes[0].type == "dev.knative.sources.ping"
    assert status.ceAttributes[0].source == "/apis/v1/namespaces/ns/pingsources/p"
    source = desired.contract["PingSource/ns/p"].source
    assert source.sink == "http://localhost:8080/ns/default"
    assert source.ce_overrides == {"team": "a"}
    assert source.ping == PingSchedule(
        schedule="*/2 * * * *", timezone="Europe/Paris", content_type="text/plain", data_base64="aGVsbG8="
    )


def test_ping_source_with_missing_sink_is_not_ready_and_not_scheduled() -> None:
    desired = _reconcile(ping_source_doc("p", "ns", sink_ref("Broker", "absent")))
    ready = desired.statuses[ResourceKey("PingSource", "ns", "p")].condition("Ready")
    assert (ready.status, ready.reason) == ("False", "NotFound")
    assert "absent" in ready.message
    assert "PingSource/ns/p" not in desired.contract


def test_container_source_gets_sink_binding_env_and_expanded_args() -> None:
    desired = _reconcile(
        container_source_doc(
            "c",
            "ns",
            SINK,
            ["python", "-m", "heartbeats"],
            args=["--sink=$(K_SINK)", "--label=$(LABEL)", "$$(LABEL)"],
            env=[{"name": "LABEL", "value": "x"}, {"name": "BOTH", "value": "$(LABEL)-y"}],
            workingDir="/tmp",
            ceOverrides={"extensions": {"team": "a"}},
        )
    )
    status = desired.statuses[ResourceKey("ContainerSource", "ns", "c")]
    assert status.ready and status.sinkUri == SINK["uri"]
    process = desired.contract["ContainerSource/ns/c"].source.container
    assert process.argv == (
        "python",
        "-m",
        "heartbeats",
        f"--sink={SINK['uri']}",
        "--label=x",
        "$(LABEL)",
    )
    assert process.env["K_SINK"] == SINK["uri"]
    assert orjson.loads(process.env["K_CE_OVERRIDES"]) == {"extensions": {"team": "a"}}
    assert process.env["BOTH"] == "x-y"
    assert process.working_dir == "/tmp"


def test_container_source_without_command_cannot_run_locally() -> None:
    document = container_source_doc("c", "ns", SINK, [], image="ghcr.io/example/heartbeats")
    desired = _reconcile(document)
    ready = desired.statuses[ResourceKey("ContainerSource", "ns", "c")].condition("Ready")
    assert (ready.status, ready.reason) == ("False", "NotRunnableLocally")
    assert "command" in ready.message
    assert "ContainerSource/ns/c" not in desired.contract


def test_sink_binding_resolves_the_sink_into_its_status_only() -> None:
    desired = _reconcile(broker_doc("b", "ns"), sink_binding_doc("sb", "ns", sink_ref("Broker", "b")))
    status = desired.statuses[ResourceKey("SinkBinding", "ns", "sb")]
    assert status.ready and status.sinkUri == "http://localhost:8080/ns/b"
    assert "SinkBinding/ns/sb" not in desired.contract


def test_binding_env_sets_overrides_only_when_there_are_some() -> None:
    assert binding_env("http://s") == {"K_SINK": "http://s"}
    env = binding_env("http://s", {"a": "1"})
    assert orjson.loads(env["K_CE_OVERRIDES"]) == {"extensions": {"a": "1"}}
    assert expand("$(A) $(B) $$(A)", {"A": "1"}) == "1 $(B) $(A)"


def test_contract_entry_with_a_source_round_trips() -> None:
    entry = ContractEntry(source=_ping_source())
    decoded = ContractEntry.decode(entry.encode())
    assert decoded == entry and decoded.id == "PingSource/ns/p"


# ----------------------------------------------------------------------------------------- scheduler


def _ping_source(schedule: str = "* * * * *", **ping: str) -> Source:
    return Source(
        id="PingSource/ns/p",
        kind="PingSource",
        namespace="ns",
        name="p",
        uid="u",
        sink="http://sink",
        ce_overrides={"team": "a", "type": "ignored"},
        ping=PingSchedule(schedule=schedule, **ping),
    )


def test_ping_event_has_knative_type_source_data_and_overrides() -> None:
    source = _ping_source(content_type="application/json", data_base64=base64.b64encode(b'{"a":1}').decode())
    event = ping_event(source, datetime(2024, 1, 1, 0, 1, tzinfo=UTC), "id-1")
    assert event.attributes == {
        "specversion": "1.0",
        "id": "id-1",
        "source": "/apis/v1/namespaces/ns/pingsources/p",
        "type": "dev.knative.sources.ping",
        "time": "2024-01-01T00:01:00Z",
        "datacontenttype": "application/json",
        "team": "a",
    }
    assert event.data == b'{"a":1}'


def test_ping_events_have_fresh_ids() -> None:
    source = _ping_source()
    tick = datetime(2024, 1, 1, tzinfo=UTC)
    assert ping_event(source, tick).id != ping_event(source, tick).id


async def test_scheduler_fires_once_per_tick_and_does_not_replay_missed_ticks() -> None:
    clock = ManualClock(datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC))
    sent: list[str] = []

    async def send(source: Source, event) -> None:
        sent.append(event.attributes["time"])

    scheduler = PingScheduler(clock, send)
    scheduler.put(_ping_source())
    assert scheduler.fire_due() == 0
    clock.advance(30)  # 00:01:00 exactly
    assert scheduler.fire_due() == 1
    assert scheduler.fire_due() == 0
    clock.advance(60 * 10)  # ten ticks passed while nothing ran: one event, for the latest
    assert scheduler.fire_due() == 1
    await asyncio.sleep(0)
    assert sent == ["2024-01-01T00:01:00Z", "2024-01-01T00:11:00Z"]
    assert scheduler.entries["PingSource/ns/p"].next_tick == datetime(2024, 1, 1, 0, 12, tzinfo=UTC)


async def test_setting_the_clock_looks_forward_without_firing() -> None:
    clock = ManualClock(datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC))

    async def send(source: Source, event) -> None:
        raise AssertionError("nothing should be sent")

    scheduler = PingScheduler(clock, send)
    scheduler.put(_ping_source("0 * * * *"))
    clock.set(datetime(2030, 6, 1, 12, 30, tzinfo=UTC))
    scheduler.reset()
    assert scheduler.fire_due() == 0
    assert scheduler.entries["PingSource/ns/p"].next_tick == datetime(2030, 6, 1, 13, 0, tzinfo=UTC)


def test_assignment_partition_is_stable_and_spread() -> None:
    ids = [f"PingSource/ns/p{i}" for i in range(200)]
    partitions = [partition_for(i, 12) for i in ids]
    assert partitions == [partition_for(i, 12) for i in ids]
    assert len(set(partitions)) == 12


def test_restart_backoff_doubles_with_quick_exits_and_is_capped() -> None:
    backoff = Backoff(initial=1.0, maximum=60.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 7, 8)] == [1.0, 2.0, 4.0, 8.0, 60.0, 60.0]
    assert backoff.quick(5.0) and not backoff.quick(120.0)


def test_every_source_example_applies_on_the_quickstart_and_becomes_ready() -> None:
    root = Path(__file__).resolve().parents[2] / "examples"
    documents = [
        document
        for path in sorted(
            [*root.joinpath("quickstart").glob("*.yaml"), *root.joinpath("sources").glob("*.yaml")]
        )
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]
    resources = [parse_resource(d) for d in documents]
    desired = reconcile(resources, CONFIG)
    kinds = {r.KIND for r in resources}
    assert {"PingSource", "ContainerSource", "SinkBinding", "KafkaSource", "KafkaSink", "EventType"} <= kinds
    not_ready = {str(k): s.condition("Ready").message for k, s in desired.statuses.items() if not s.ready}
    assert not_ready == {}


async def test_a_rebalance_stops_schedules_at_once_and_processes_only_when_they_moved() -> None:
    runner = SourceRunner(SourcesSettings(), ManualClock())
    ping = _ping_source()
    container = Source(
        id="ContainerSource/ns/c",
        kind="ContainerSource",
        namespace="ns",
        name="c",
        uid="u",
        sink="http://sink",
        container=ContainerProcess(argv=(sys.executable, "-c", "import time; time.sleep(30)")),
    )
    runner.sources = {ping.id: ping, container.id: container}
    runner.ownership.partitions = 12
    try:
        runner.ownership.owned = frozenset(range(12))
        await runner._reconcile(final=True)
        process = runner.containers.running[container.id]
        assert ping.id in runner.scheduler.entries
        runner.ownership.owned = frozenset()  # the revocation that starts every rebalance
        await runner._reconcile(final=False)
        assert ping.id not in runner.scheduler.entries
        assert runner.containers.running[container.id] is process
        runner.ownership.owned = frozenset(range(12))  # ... and everything came back
        await runner._reconcile(final=True)
        assert runner.containers.running[container.id] is process
        runner.ownership.owned = frozenset()  # ... or it moved to another runner
        await runner._reconcile(final=True)
        assert container.id not in runner.containers.running
    finally:
        await runner.containers.stop_all()


# ------------------------------------------------------------------------------- IntegrationSource


def _timer_doc(**timer: object) -> dict:
    return {
        "apiVersion": "sources.knative.dev/v1alpha1",
        "kind": "IntegrationSource",
        "metadata": {"name": "tick", "namespace": "ns"},
        "spec": {"timer": {"message": "Hello", **timer}, "sink": {"uri": "http://sink"}},
    }


def test_a_timer_integration_source_enters_the_contract_with_knative_s_defaults() -> None:
    desired = _reconcile(_timer_doc(period=2000, repeatCount=3))
    status = desired.statuses[ResourceKey("IntegrationSource", "ns", "tick")]
    assert status.ready and status.sinkUri == "http://sink"
    assert [(a.type, a.source) for a in status.ceAttributes] == [
        ("dev.knative.connector.event.timer", "dev.knative.eventing.timer-source")
    ]
    timer = desired.contract["IntegrationSource/ns/tick"].source.timer
    assert (timer.period_ms, timer.message, timer.content_type, timer.repeat_count) == (
        2000,
        "Hello",
        "text/plain",
        3,
    )


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (
            {"aws": {"s3": {"arn": "bucket"}}, "sink": {"uri": "http://sink"}},
            "spec.aws",
            "AWS integrations (s3)",
        ),
        ({"sink": {"uri": "http://sink"}}, "spec.timer", "timer integration only"),
        (
            {"timer": {"message": "m", "period": 1}, "sink": {"uri": "http://sink"}},
            "spec.timer.period",
            "at least",
        ),
        (
            {"timer": {"message": "m", "repeatCount": 0}, "sink": {"uri": "http://sink"}},
            "spec.timer.repeatCount",
            "at least 1",
        ),
    ],
)
def test_what_keventing_does_not_run_of_an_integration_source_is_refused_by_name(
    spec: dict, field: str, message: str
) -> None:
    document = _timer_doc()
    document["spec"] = spec
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(document)
    assert field in str(err.value) and message in str(err.value)


def _timer_source(period_ms: int = 1000, repeat_count: int | None = None) -> Source:
    return Source(
        id="IntegrationSource/ns/tick",
        kind="IntegrationSource",
        namespace="ns",
        name="tick",
        uid="u",
        sink="http://sink",
        ce_overrides={"team": "a"},
        timer=TimerSchedule(
            period_ms=period_ms, message="Hello", content_type="text/plain", repeat_count=repeat_count
        ),
    )


async def test_a_timer_fires_every_period_and_stops_after_its_repeat_count() -> None:
    clock = ManualClock(datetime(2024, 1, 1, tzinfo=UTC))
    sent: list[events.Event] = []

    async def send(source: Source, event: events.Event) -> None:
        sent.append(event)

    scheduler = PingScheduler(clock, send)
    scheduler.put(_timer_source(period_ms=500, repeat_count=3))
    assert scheduler.fire_due() == 0
    for _ in range(5):
        clock.advance(0.5)
        scheduler.fire_due()
    # Putting the same source again (a contract pass) does not start the count afresh.
    scheduler.put(_timer_source(period_ms=500, repeat_count=3))
    clock.advance(0.5)
    assert scheduler.fire_due() == 0
    await asyncio.sleep(0)
    assert [e.attributes["time"] for e in sent] == [
        "2024-01-01T00:00:00.500Z",
        "2024-01-01T00:00:01.000Z",
        "2024-01-01T00:00:01.500Z",
    ]
    first = sent[0]
    assert (first.attributes["type"], first.attributes["source"], first.attributes["subject"]) == (
        "dev.knative.connector.event.timer",
        "dev.knative.eventing.timer-source",
        "timer-source",
    )
    assert (first.attributes["datacontenttype"], first.attributes["team"], first.data) == (
        "text/plain",
        "a",
        b"Hello",
    )
    assert scheduler.entries["IntegrationSource/ns/tick"].next_tick is None


async def test_a_timer_that_fell_behind_fires_once_and_keeps_its_rhythm() -> None:
    clock = ManualClock(datetime(2024, 1, 1, tzinfo=UTC))
    sent: list[events.Event] = []

    async def send(source: Source, event: events.Event) -> None:
        sent.append(event)

    scheduler = PingScheduler(clock, send)
    scheduler.put(_timer_source(period_ms=1000))
    clock.advance(10.5)  # ten periods passed while nothing ran
    assert scheduler.fire_due() == 1
    assert scheduler.entries["IntegrationSource/ns/tick"].next_tick == datetime(
        2024, 1, 1, 0, 0, 11, tzinfo=UTC
    )
