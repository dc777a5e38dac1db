"""The local stack's contract key: made once, kept, and given to every service unless the environment has one."""

from __future__ import annotations

from pathlib import Path

import pytest

from kev.stack import Stack, ensure_key_file
from keventing.contractauth import parse_keys


def test_the_key_file_is_created_once_readable_by_its_owner(tmp_path: Path) -> None:
    path = ensure_key_file(tmp_path / "state" / "contract.key")
    key = path.read_text()
    assert parse_keys(key).keys
    assert path.stat().st_mode & 0o777 == 0o600
    assert ensure_key_file(path).read_text() == key


def test_a_stack_without_a_key_in_its_environment_gives_its_services_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEVENTING_CONTRACT_KEY", raising=False)
    monkeypatch.delenv("KEVENTING_CONTRACT_KEY_FILE", raising=False)
    env = Stack("127.0.0.1:9092", tmp_path / "logs").env()
    assert env["KEVENTING_CONTRACT_KEY_FILE"] == str(tmp_path / "contract.key")
    assert "KEVENTING_CONTRACT_KEY" not in env
    again = Stack("127.0.0.1:9092", tmp_path / "logs").env()
    assert Path(again["KEVENTING_CONTRACT_KEY_FILE"]).read_text() == (tmp_path / "contract.key").read_text()


def test_a_key_in_the_environment_is_the_stacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEVENTING_CONTRACT_KEY", raising=False)
    env = Stack("127.0.0.1:9092", tmp_path / "logs", extra_env={"KEVENTING_CONTRACT_KEY": "k" * 32}).env()
    assert env["KEVENTING_CONTRACT_KEY"] == "k" * 32
    assert "KEVENTING_CONTRACT_KEY_FILE" not in env
    assert not (tmp_path / "contract.key").exists()
