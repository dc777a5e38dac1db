"""`kev replay` and `kev redrive` on a real Kafka: a Trigger's position moved while it is paused, and its
dead letters sent back to it alone."""

from __future__ import annotations

import asyncio
import subprocess
import time
from datetime import UTC, datetime

from conftest import Kev, Reaction, RecordingSink
from helpers import broker_doc, kafka_sink_doc, trigger_doc

from kev.replay import group_members
from keventing import naming

PAUSED = {"keventing.knative.dev/paused": "true"}


def _members(kev: Kev, ns: str, trigger: str) -> int:
    group = naming.trigger_group(ns, trigger)
    return asyncio.run(group_members(kev.settings.kafka_connection, group))


def _ids(sink: RecordingSink, path: str) -> list[str]:
    return [e.id for e in sink.events(path)]


def _ready_trigger(kev: Kev, ns: str, path: str, sink: RecordingSink, **spec: object) -> None:
    kev.apply(broker_doc("default", ns), trigger_doc("t", ns, "default", sink.url(path), **spec))
    kev.wait_ready("Trigger", "t", ns)


def test_replay_from_offset_redelivers_earlier_events_and_leaves_the_trigger_ready(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    path = f"{ns}/replayed"
    _ready_trigger(kev, ns, path, sink)
    for n in range(3):
        assert kev.send(ns, "default", f"r-{n}").status_code == 202
    sink.wait_for(path, 3)

    result = kev.cli("replay", f"{ns}/t", "--from-offset", "0")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"paused Trigger {ns}/t" in out and f"resumed Trigger {ns}/t: Ready" in out
    topic = naming.broker_topic(ns, "default")
    # Every partition of the Broker's topic went back to 0 (Kafka takes the commit only from an empty group).
    moved = [line.strip() for line in out.splitlines() if line.strip().startswith(topic)]
    assert len(moved) == 3 and all(line.endswith("-> 0") for line in moved), out
    assert sum(int(line.split(": ")[1].split(" ")[0]) for line in moved) == 3, out

    sink.wait_for(path, 6)
    time.sleep(1.0)
    assert sorted(_ids(sink, path)) == sorted([f"r-{n}" for n in range(3)] * 2)
    trigger = kev.get("Trigger", "t", ns)
    assert trigger is not None and trigger.status.ready
    assert "keventing.knative.dev/paused" not in trigger.metadata.annotations
    assert kev.send(ns, "default", "after").status_code == 202
    sink.wait_for(path, 7)


def test_replay_from_time_redelivers_only_what_was_written_since(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    path = f"{ns}/since"
    _ready_trigger(kev, ns, path, sink)
    for name in ("old-1", "old-2"):
        assert kev.send(ns, "default", name).status_code == 202
    sink.wait_for(path, 2)
    time.sleep(1.0)
    since = datetime.now(UTC).isoformat()
    time.sleep(0.5)
    for name in ("new-1", "new-2"):
        assert kev.send(ns, "default", name).status_code == 202
    sink.wait_for(path, 4)

    result = kev.cli("replay", "t", "-n", ns, "--from-time", since)
    assert result.returncode == 0, result.stderr
    sink.wait_for(path, 6)
    time.sleep(1.0)
    assert sorted(_ids(sink, path)[4:]) == ["new-1", "new-2"]


def test_paused_trigger_leaves_its_group_and_to_latest_skips_the_backlog(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    path = f"{ns}/backlog"
    _ready_trigger(kev, ns, path, sink)
    kev.wait_for(lambda: _members(kev, ns, "t") >= 1, what="the dispatcher to join the group")

    kev.apply(trigger_doc("t", ns, "default", sink.url(path), annotations=PAUSED))
    kev.wait_for(
        lambda: (t := kev.get("Trigger", "t", ns)) and t.status.condition("Ready").reason == "Paused",
        what="the Trigger to say it is paused",
    )
    kev.wait_for(lambda: _members(kev, ns, "t") == 0, what="the dispatcher to leave the group")
    for n in range(4):
        assert kev.send(ns, "default", f"backlog-{n}").status_code == 202
    time.sleep(2.0)
    assert sink.requests(path) == [], "a paused Trigger delivers nothing"

    result = kev.cli("replay", "t", "-n", ns, "--to-latest")
    assert result.returncode == 0, result.stderr
    assert "was paused before: left paused" in result.stdout
    trigger = kev.get("Trigger", "t", ns)
    assert trigger is not None and trigger.metadata.annotations == PAUSED

    kev.apply(trigger_doc("t", ns, "default", sink.url(path)))
    kev.wait_ready("Trigger", "t", ns)
    kev.wait_for(lambda: _members(kev, ns, "t") >= 1, what="the dispatcher to rejoin the group")
    assert kev.send(ns, "default", "fresh").status_code == 202
    sink.wait_for(path, 1)
    time.sleep(1.5)
    assert _ids(sink, path) == ["fresh"], "the backlog sent while paused was skipped"


def test_replay_fails_clearly(kev: Kev, ns: str) -> None:
    missing = kev.cli("replay", "nosuch", "-n", ns, "--to-latest")
    assert missing.returncode == 1
    assert f'Trigger "nosuch" not found in namespace "{ns}"' in missing.stderr
    both = kev.cli("replay", "nosuch", "--to-latest", "--from-offset", "3")
    assert both.returncode == 1 and "exactly one of" in both.stderr
    bad_time = kev.cli("replay", "nosuch", "--from-time", "yesterday")
    assert bad_time.returncode == 1 and "--from-time" in bad_time.stderr


def test_redrive_sends_dead_letters_back_to_their_trigger_alone(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    path, other = f"{ns}/fixed-later", f"{ns}/other"
    sink.program(path, Reaction(400), Reaction(400))
    dls = {"ref": {"apiVersion": "eventing.knative.dev/v1alpha1", "kind": "KafkaSink", "name": "dls"}}
    kev.apply(
        kafka_sink_doc("dls", ns, f"{ns}-dls", numPartitions=1, replicationFactor=1),
        broker_doc("default", ns),
        trigger_doc("t", ns, "default", sink.url(path), delivery={"retry": 0, "deadLetterSink": dls}),
        trigger_doc("o", ns, "default", sink.url(other)),
    )
    kev.wait_ready("Trigger", "t", ns)
    kev.wait_ready("Trigger", "o", ns)
    for name in ("dead-1", "dead-2"):
        assert kev.send(ns, "default", name).status_code == 202
    sink.wait_for(other, 2)
    sink.wait_for(path, 2)

    def listed() -> subprocess.CompletedProcess[str] | None:
        dry = kev.cli("redrive", "t", "-n", ns, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        return dry if "would redrive 2 events" in dry.stdout else None

    dry = kev.wait_for(listed, what="both events on the dead-letter topic")
    assert "dead-1" in dry.stdout and "dead-2" in dry.stdout and "code 400" in dry.stdout
    time.sleep(1.0)
    assert len(sink.requests(path)) == 2, "a dry run sends nothing"

    result = kev.cli("redrive", f"{ns}/t")
    assert result.returncode == 0, result.stderr
    assert "redrove 2 events" in result.stdout and f"{ns}-dls" in result.stdout

    sink.wait_for(path, 4)
    time.sleep(2.0)
    redriven = sink.events(path)[2:]
    assert sorted(e.id for e in redriven) == ["dead-1", "dead-2"]
    for event in redriven:
        assert not {"knativeerrordest", "knativeerrorcode", "knativeerrordata"} & set(event.attributes)
        assert "keventing_target" not in event.attributes
    assert sorted(_ids(sink, other)) == ["dead-1", "dead-2"], "the Broker's other Trigger got them once"
    assert len(sink.requests(path)) == 4


def test_redrive_without_a_dead_letter_topic_says_what_to_do(kev: Kev, sink: RecordingSink, ns: str) -> None:
    _ready_trigger(kev, ns, f"{ns}/plain", sink)
    result = kev.cli("redrive", "t", "-n", ns)
    assert result.returncode == 1
    assert "no dead-letter sink on Kafka" in result.stderr and "--topic" in result.stderr
