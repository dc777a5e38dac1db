"""What `kev replay` commits and what `kev redrive` sends, without Kafka."""

from __future__ import annotations

from aiokafka import TopicPartition

from kev.redrive import dead_letters, redriven
from kev.replay import Position, targets
from kev.tail import TailedEvent
from keventing.contract import Egress

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)
BEGINNINGS = {P0: 5, P1: 0}
ENDS = {P0: 20, P1: 3}


def test_each_position_is_kept_within_what_the_partition_holds() -> None:
    assert targets(Position("offset", offset=2), BEGINNINGS, ENDS, {}) == {P0: 5, P1: 2}
    assert targets(Position("offset", offset=10), BEGINNINGS, ENDS, {}) == {P0: 10, P1: 3}
    assert targets(Position("earliest"), BEGINNINGS, ENDS, {}) == {P0: 5, P1: 0}
    assert targets(Position("latest"), BEGINNINGS, ENDS, {}) == {P0: 20, P1: 3}
    # No record that late on a partition: nothing of it is delivered again.
    assert targets(Position("time", timestamp_ms=1), BEGINNINGS, ENDS, {P0: 12, P1: None}) == {P0: 12, P1: 3}


def _letter(event_id: str, failed_at: str | None) -> TailedEvent:
    attributes = {"specversion": "1.0", "id": event_id, "type": "x", "source": "/s", "partitionkey": "k"}
    if failed_at is not None:
        attributes.update(knativeerrordest=failed_at, knativeerrorcode="500", knativeerrordata="b29wcw==")
    return TailedEvent("dls", 0, 0, 0, attributes, b"{}")


def test_redrive_takes_the_trigger_s_own_letters_without_the_dead_letter_extensions() -> None:
    egress = Egress(
        id="Trigger/ns/t",
        kind="Trigger",
        namespace="ns",
        name="t",
        uid="u",
        topics=("b",),
        consumer_group="g",
        destination="http://mine/",
    )
    letters = [_letter("a", "http://mine/"), _letter("b", "http://theirs/"), _letter("c", None)]
    assert [e.id for e in dead_letters(letters, egress, every=False)] == ["a", "c"]
    assert [e.id for e in dead_letters(letters, egress, every=True)] == ["a", "b", "c"]
    event = redriven(letters[0])
    assert event.attributes == {
        "specversion": "1.0",
        "id": "a",
        "type": "x",
        "source": "/s",
        "partitionkey": "k",
    }
    assert event.data == b"{}"
