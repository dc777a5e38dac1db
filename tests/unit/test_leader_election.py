"""The leader election's decisions, without an API server: who may write the Lease, and what it writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kubernetes_asyncio import client as k8s

from controller.kubernetes.leader import LeaseConfig, default_identity, default_namespace, may_take, next_spec

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_lease_nobody_holds_may_be_taken_at_once() -> None:
    assert may_take(None, "me_1", unchanged_for=0.0, lease_seconds=15)
    assert may_take("", "me_1", unchanged_for=0.0, lease_seconds=15)


def test_the_holder_may_always_renew() -> None:
    assert may_take("me_1", "me_1", unchanged_for=0.0, lease_seconds=15)


def test_another_holders_lease_may_be_taken_only_once_it_went_unrenewed_for_its_duration() -> None:
    assert not may_take("other_2", "me_1", unchanged_for=14.9, lease_seconds=15)
    assert may_take("other_2", "me_1", unchanged_for=15.1, lease_seconds=15)


def test_renewing_keeps_the_acquire_time_and_the_transitions() -> None:
    acquired = NOW - timedelta(minutes=5)
    current = k8s.V1LeaseSpec(
        holder_identity="me_1",
        acquire_time=acquired,
        renew_time=NOW - timedelta(seconds=5),
        lease_transitions=3,
    )
    spec = next_spec(current, "me_1", 15, NOW)
    assert (spec.holder_identity, spec.acquire_time, spec.renew_time) == ("me_1", acquired, NOW)
    assert spec.lease_transitions == 3
    assert spec.lease_duration_seconds == 15


def test_taking_over_counts_a_transition_and_restarts_the_acquire_time() -> None:
    current = k8s.V1LeaseSpec(
        holder_identity="other_2", acquire_time=NOW - timedelta(hours=1), lease_transitions=3
    )
    spec = next_spec(current, "me_1", 15, NOW)
    assert (spec.holder_identity, spec.acquire_time, spec.lease_transitions) == ("me_1", NOW, 4)


def test_the_first_holder_counts_no_transition() -> None:
    spec = next_spec(None, "me_1", 15, NOW)
    assert (spec.holder_identity, spec.acquire_time, spec.lease_transitions) == ("me_1", NOW, 0)


def test_a_leader_steps_down_a_renew_period_before_its_lease_could_expire() -> None:
    assert LeaseConfig("ns", "lease", "me_1", lease_seconds=15, renew_seconds=5).renew_deadline == 10


def test_a_renew_period_not_shorter_than_the_lease_is_refused_with_both_values() -> None:
    with pytest.raises(ValueError, match=r"renew period \(15 s\).*lease duration \(10 s\)"):
        LeaseConfig("ns", "lease", "me_1", lease_seconds=10, renew_seconds=15)


def test_the_lease_namespace_defaults_to_the_pods_own(tmp_path: Path) -> None:
    file = tmp_path / "namespace"
    file.write_text("keventing\n")
    assert default_namespace(file) == "keventing"
    assert default_namespace(tmp_path / "absent") == "default"


def test_the_identity_names_the_process() -> None:
    import os

    assert default_identity().endswith(f"_{os.getpid()}")
