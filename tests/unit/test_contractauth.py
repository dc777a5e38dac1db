"""Contract tags: what verifies, what does not, and how a service reads its keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from keventing.contract import ContractEntry, Ingress
from keventing.contractauth import TAG_HEADER, ContractKeyInvalid, ContractKeys, new_key, parse_keys
from keventing.contractstream import ContractMetrics, trusted_changes
from keventing.kafka.compacted import Record
from keventing.settings import CommonSettings

TOPIC = "keventing.contract"
KEY = "Trigger/ns/t"
KEYS = ContractKeys([new_key().encode()])


def _entry(topic: str) -> ContractEntry:
    ingress = Ingress(id="Broker/ns/b", kind="Broker", namespace="ns", name="b", path="/ns/b", topic=topic)
    return ContractEntry(ingress=ingress)


def test_a_signed_value_and_a_signed_tombstone_verify() -> None:
    for value in (b'{"version": 1}', b"", None):
        assert KEYS.verify(TOPIC, KEY, value, KEYS.headers(TOPIC, KEY, value)) is None


def test_a_record_without_a_tag_is_unsigned() -> None:
    assert KEYS.verify(TOPIC, KEY, b"v", []) == "unsigned"
    assert KEYS.verify(TOPIC, KEY, None, [("other", b"x")]) == "unsigned"


def test_a_tag_does_not_move_to_another_value_key_topic_or_to_a_tombstone() -> None:
    headers = KEYS.headers(TOPIC, KEY, b"v")
    assert KEYS.verify(TOPIC, KEY, b"w", headers) == "bad-tag"
    assert KEYS.verify(TOPIC, "Trigger/ns/other", b"v", headers) == "bad-tag"
    assert KEYS.verify("other.contract", KEY, b"v", headers) == "bad-tag"
    assert KEYS.verify(TOPIC, KEY, None, headers) == "bad-tag"
    assert KEYS.verify(TOPIC, KEY, b"", KEYS.headers(TOPIC, KEY, None)) == "bad-tag"


def test_key_and_topic_boundaries_are_part_of_the_tag() -> None:
    assert KEYS.headers("ab", "c", b"v") != KEYS.headers("a", "bc", b"v")


def test_a_tag_made_with_another_key_or_a_second_tag_is_bad() -> None:
    value = b"v"
    other = ContractKeys([new_key().encode()]).headers(TOPIC, KEY, value)
    assert KEYS.verify(TOPIC, KEY, value, other) == "bad-tag"
    assert KEYS.verify(TOPIC, KEY, value, [*KEYS.headers(TOPIC, KEY, value), *other]) == "bad-tag"


def test_rotation_signs_with_the_first_key_and_accepts_every_one() -> None:
    new, old = new_key().encode(), new_key().encode()
    rotated = ContractKeys([new, old])
    by_old = ContractKeys([old]).headers(TOPIC, KEY, b"v")
    assert rotated.verify(TOPIC, KEY, b"v", by_old) is None
    assert rotated.headers(TOPIC, KEY, b"v") == ContractKeys([new]).headers(TOPIC, KEY, b"v")
    assert [name for name, _ in rotated.headers(TOPIC, KEY, b"v")] == [TAG_HEADER]


def test_keys_are_read_from_commas_or_lines_and_short_ones_are_refused() -> None:
    a, b = new_key(), new_key()
    assert parse_keys(f" {a}, {b} ").keys == [a.encode(), b.encode()]
    assert parse_keys(f"{a}\n{b}\n").keys == [a.encode(), b.encode()]
    with pytest.raises(ContractKeyInvalid, match="shorter than 16"):
        parse_keys(f"{a},short")
    with pytest.raises(ContractKeyInvalid, match="no key"):
        parse_keys(" , \n")


def test_a_service_without_a_key_refuses_to_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KEVENTING_CONTRACT_KEY", raising=False)
    monkeypatch.delenv("KEVENTING_CONTRACT_KEY_FILE", raising=False)
    with pytest.raises(SystemExit, match="KEVENTING_CONTRACT_KEY .*is not set"):
        CommonSettings().contract_keys()
    monkeypatch.setenv("KEVENTING_CONTRACT_KEY", "too-short")
    with pytest.raises(SystemExit, match="KEVENTING_CONTRACT_KEY: a key is shorter"):
        CommonSettings().contract_keys()


def test_keys_come_from_a_file_when_the_variable_is_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = new_key()
    (tmp_path / "contract.key").write_text(f"{key}\n")
    monkeypatch.delenv("KEVENTING_CONTRACT_KEY", raising=False)
    monkeypatch.setenv("KEVENTING_CONTRACT_KEY_FILE", str(tmp_path / "contract.key"))
    assert CommonSettings().contract_keys().keys == [key.encode()]
    monkeypatch.setenv("KEVENTING_CONTRACT_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(SystemExit, match="KEVENTING_CONTRACT_KEY_FILE: cannot read"):
        CommonSettings().contract_keys()


def _record(key: str, value: bytes | None, signed: bool = True) -> Record:
    return Record(key, value, KEYS.headers(TOPIC, key, value) if signed else [], 0)


def test_a_batch_applies_the_last_signed_record_of_each_key_and_counts_the_others() -> None:
    metrics = ContractMetrics(CollectorRegistry())
    real, forged = _entry("t"), _entry("attacker")
    batch = [
        _record(KEY, real.encode()),
        _record(KEY, forged.encode(), signed=False),
        _record(KEY, None, signed=False),
        _record("Broker/ns/gone", None),
        _record("Broker/ns/new", b'{"version": 99}'),
    ]
    assert trusted_changes(TOPIC, batch, KEYS, metrics) == {
        KEY: real,
        "Broker/ns/gone": None,
        "Broker/ns/new": None,  # signed but unreadable (a newer controller's): not served
    }
    assert metrics.rejected.labels("unsigned")._value.get() == 2
    assert metrics.rejected.labels("unreadable")._value.get() == 1
