"""One service's view of the contract: snapshots replace it, changes apply, projections pick what it serves."""

from __future__ import annotations

from keventing.contract import ContractEntry, Egress, Ingress
from keventing.contractstream import ContractFollower


def _ingress(name: str, topic: str = "t") -> ContractEntry:
    return ContractEntry(
        ingress=Ingress(
            id=f"Broker/ns/{name}", kind="Broker", namespace="ns", name=name, path=f"/ns/{name}", topic=topic
        )
    )


def _egress(name: str) -> ContractEntry:
    egress = Egress(
        id=f"Trigger/ns/{name}",
        kind="Trigger",
        namespace="ns",
        name=name,
        uid="u",
        topics=("t",),
        consumer_group=f"g-{name}",
    )
    return ContractEntry(egress=egress)


class Recorder:
    def __init__(self) -> None:
        self.applied: list[tuple[str, str | None, str | None]] = []
        self.batches = 0

    async def apply(self, key: str, old: Ingress | None, new: Ingress | None) -> None:
        self.applied.append((key, old.topic if old else None, new.topic if new else None))

    async def batch_done(self) -> None:
        self.batches += 1


def _follower(recorder: Recorder) -> ContractFollower[Ingress]:
    return ContractFollower(lambda entry: entry.ingress, recorder.apply, recorder.batch_done)


async def test_the_first_batch_syncs_the_follower_with_only_the_projected_entries() -> None:
    recorder = Recorder()
    follower = _follower(recorder)
    assert not follower.synced
    await follower.on_batch({"Broker/ns/a": _ingress("a"), "Trigger/ns/x": _egress("x")}, True)
    assert follower.synced
    assert set(follower.entries) == {"Broker/ns/a"}
    assert recorder.applied == [("Broker/ns/a", None, "t")]
    assert recorder.batches == 1


async def test_changes_apply_with_old_and_new_and_deletions_remove() -> None:
    recorder = Recorder()
    follower = _follower(recorder)
    await follower.on_batch({"Broker/ns/a": _ingress("a")}, True)
    await follower.on_batch({"Broker/ns/a": _ingress("a", "t2")}, False)
    await follower.on_batch({"Broker/ns/a": None}, False)
    assert follower.entries == {}
    assert recorder.applied[1:] == [("Broker/ns/a", "t", "t2"), ("Broker/ns/a", "t2", None)]


async def test_a_snapshot_removes_what_it_lacks_and_skips_what_did_not_change() -> None:
    recorder = Recorder()
    follower = _follower(recorder)
    await follower.on_batch({"Broker/ns/a": _ingress("a"), "Broker/ns/b": _ingress("b")}, True)
    recorder.applied.clear()
    await follower.on_batch({"Broker/ns/b": _ingress("b")}, True)  # a reconnect: a was deleted meanwhile
    assert set(follower.entries) == {"Broker/ns/b"}
    assert recorder.applied == [("Broker/ns/a", "t", None)]
    assert recorder.batches == 2


async def test_an_entry_that_stops_projecting_is_removed() -> None:
    recorder = Recorder()
    follower = _follower(recorder)
    await follower.on_batch({"Broker/ns/a": _ingress("a")}, True)
    await follower.on_batch({"Broker/ns/a": _egress("a")}, False)
    assert follower.entries == {}
    assert recorder.applied[-1] == ("Broker/ns/a", "t", None)
