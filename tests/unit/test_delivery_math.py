"""Pure pieces of delivery: backoff schedules, Retry-After, offset tracking, dead-letter extensions."""

from __future__ import annotations

import base64
import email.utils

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.backoff import backoff_seconds, retry_after_seconds
from dispatcher.delivery import Attempt, error_extensions
from dispatcher.offsets import OffsetTracker
from keventing.durations import parse_duration


def test_linear_backoff_waits_delay_times_n() -> None:
    assert [backoff_seconds("linear", 0.5, n) for n in (1, 2, 3)] == [0.5, 1.0, 1.5]


def test_exponential_backoff_waits_delay_times_two_to_the_n() -> None:
    assert [backoff_seconds("exponential", 0.1, n) for n in (1, 2, 3)] == [0.2, 0.4, 0.8]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("7") == 7.0
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after_seconds(date, now=1_000_000) == 30.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_iso8601_durations() -> None:
    assert parse_duration("PT1S") == 1.0
    assert parse_duration("PT0.2S") == 0.2
    assert parse_duration("PT1M30S") == 90.0
    assert parse_duration("P1DT1H") == 90000.0


def test_offset_tracker_commits_only_up_to_the_first_event_in_flight() -> None:
    tracker = OffsetTracker(10)
    for offset in (10, 11, 12):
        tracker.started(offset)
    tracker.finished(11)
    tracker.finished(12)
    assert tracker.committable() == 10
    tracker.finished(10)
    assert tracker.committable() == 13


@given(st.permutations(list(range(20))), st.integers(min_value=0, max_value=20))
def test_offset_tracker_never_passes_an_unfinished_offset(order: list[int], done_count: int) -> None:
    tracker = OffsetTracker(0)
    for offset in range(20):
        tracker.started(offset)
    finished = set(order[:done_count])
    for offset in order[:done_count]:
        tracker.finished(offset)
    committable = tracker.committable()
    assert all(offset in finished for offset in range(committable))
    assert committable == 20 or committable not in finished


def test_dead_letter_extensions_carry_destination_code_data_and_kne_headers() -> None:
    failed = Attempt(
        422, b"bad things" * 200, {"kne-reason": "quota", "kne-Other-Thing": "x", "x-ignored": "y"}
    )
    extensions = error_extensions(failed, "http://sub/")
    assert extensions["knativeerrordest"] == "http://sub/"
    assert extensions["knativeerrorcode"] == "422"
    assert len(extensions["knativeerrordata"]) <= 1024
    assert (b"bad things" * 200).startswith(base64.b64decode(extensions["knativeerrordata"]))
    assert extensions["reason"] == "quota"
    assert "ignored" not in extensions


def test_transport_errors_dead_letter_with_code_500() -> None:
    assert error_extensions(Attempt(0, error="connection refused"), "http://x/")["knativeerrorcode"] == "500"


def test_retryable_statuses_follow_knative() -> None:
    retryable = {
        code for code in (400, 401, 403, 404, 408, 409, 413, 429, 500, 502, 503) if Attempt(code).retryable
    }
    assert retryable == {404, 408, 409, 429, 500, 502, 503}
    assert Attempt(0, error="timeout").retryable


def test_filtered_offsets_move_the_commit_point_without_passing_one_in_flight() -> None:
    tracker = OffsetTracker(0)
    tracker.started(0)
    tracker.passed(1)
    tracker.passed(2)
    assert tracker.committable() == 0
    tracker.finished(0)
    assert tracker.committable() == 3
