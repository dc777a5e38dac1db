"""docker-compose.yml, up for real: the quickstart profile on podman (Kafka, controller, receiver, dispatcher,
sources, event-display), an event from the host into event-display's log, a dispatcher restart under load
that loses nothing, prompt SIGTERM handling, and a `down` that leaves nothing running.

Run by `make e2e` (root), not by `make test`. The tests share one compose project and run in order.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import httpx
import pytest

from .conftest import Compose, podman, wait_for

RECEIVER = "http://127.0.0.1:8080/default/default"  # the quickstart Broker, on the published receiver port
KEVENTING_SERVICES = ("controller", "receiver", "dispatcher", "sources", "event-display")

pytestmark = pytest.mark.timeout(600)


def send(client: httpx.Client, event_id: str) -> int:
    headers = {
        "Ce-Id": event_id,
        "Ce-Specversion": "1.0",
        "Ce-Type": "dev.keventing.e2e",
        "Ce-Source": "tests/e2e",
        "Content-Type": "application/json",
    }
    try:
        return client.post(RECEIVER, headers=headers, content=b'{"msg":"hello from the host"}').status_code
    except httpx.HTTPError:
        return 0


def displayed(compose: Compose, ids: set[str]) -> set[str]:
    """The ids among ``ids`` that event-display printed (it prints ``  id: <id>`` per event)."""
    logs = compose.logs("event-display")
    return {i for i in ids if f"id: {i}\n" in logs}


def test_quickstart_profile_comes_up_healthy(compose: Compose) -> None:
    compose("up", "--detach", "--no-build", timeout=420)

    # `up` returns once the quickstart one-shot was started, which compose does only after every
    # service it depends on reported healthy; the one-shot then applies the Broker and Trigger.
    def quickstart_exited() -> dict[str, str] | None:
        return next(
            (c for c in compose.containers() if "quickstart" in c["Names"][0] and c["State"] == "exited"),
            None,
        )

    wait_for(quickstart_exited, 120, "the quickstart one-shot to apply the Broker and Trigger")
    applied = podman(
        "inspect", "--format", "{{.State.ExitCode}}", f"{compose.env['COMPOSE_PROJECT_NAME']}_quickstart_1"
    )
    assert applied.stdout.strip() == "0", compose.logs("quickstart")
    running = {c["Labels"]["com.docker.compose.service"] for c in compose.containers(all=False)}
    assert running == {"kafka", *KEVENTING_SERVICES}
    print(f"\ncompose up (images present): {compose.timings['up --detach --no-build']:.0f} s")
    print("healthchecks run:", *compose.health_log, sep="\n  ")


def test_an_event_posted_from_the_host_reaches_event_display(compose: Compose) -> None:
    """The Broker and Trigger become ready asynchronously: POST fresh events until one is displayed."""
    sent: dict[str, int] = {}
    started = time.monotonic()
    with httpx.Client(timeout=10) as client:

        def one_displayed() -> set[str]:
            event_id = str(uuid.uuid4())
            sent[event_id] = send(client, event_id)
            return displayed(compose, {i for i, status in sent.items() if status == 202})

        shown = wait_for(
            one_displayed, 120, "an event POSTed to the receiver to reach event-display", every=1
        )
    assert 202 in sent.values()
    assert all(sent[i] == 202 for i in shown)
    print(f"\nfirst event displayed {time.monotonic() - started:.1f} s after the quickstart was applied")


def test_restarting_the_dispatcher_under_load_loses_nothing(compose: Compose) -> None:
    total, rate = 250, 50.0
    accepted: list[str] = []
    refused: list[tuple[str, int]] = []

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            start = time.monotonic()
            for n in range(total):
                time.sleep(max(0.0, start + n / rate - time.monotonic()))
                event_id = f"load-{n}-{uuid.uuid4()}"
                status = send(client, event_id)
                (accepted.append(event_id) if status == 202 else refused.append((event_id, status)))

    sender = threading.Thread(target=load, name="load")
    sender.start()
    time.sleep(1.0)  # the restart lands in the middle of the load
    compose("restart", "dispatcher", timeout=90)
    sender.join(timeout=120)
    assert not sender.is_alive(), "the load generator hung"
    restart = compose.timings["restart dispatcher"]
    wanted = set(accepted)
    with contextlib.suppress(AssertionError):  # on a timeout the counts below say what is missing
        wait_for(lambda: displayed(compose, wanted) == wanted, 120, "every accepted event displayed", every=2)
    missing = wanted - displayed(compose, wanted)
    print(
        f"\nrestart under load: sent {total}, accepted {len(accepted)}, refused {len(refused)}, "
        f"displayed {len(wanted) - len(missing)}, lost {len(missing)}; restart took {restart:.1f} s"
    )
    assert not missing
    # Only the dispatcher restarted: the receiver must have accepted every event.
    assert not refused, refused[:5]
    # The dispatcher's stop_grace_period is 30 s: a PID 1 that ignored SIGTERM would take all of it.
    assert restart < 25, f"restarting the dispatcher took {restart:.1f} s: SIGTERM not handled promptly?"


def test_every_keventing_service_stops_promptly_on_sigterm(compose: Compose) -> None:
    """`podman stop` sends SIGTERM and waits up to 30 s before SIGKILL: a PID 1 that ignored SIGTERM would
    take the full 30 s. Timed with podman directly (docker-compose adds seconds of its own)."""
    stopped = {}
    for container in compose.containers(all=False):
        service = container["Labels"]["com.docker.compose.service"]
        if service in KEVENTING_SERVICES:
            started = time.monotonic()
            podman("stop", "--time", "30", container["Id"], timeout=60)
            stopped[service] = time.monotonic() - started
    print("\nstop on SIGTERM: " + ", ".join(f"{s} {t:.1f} s" for s, t in sorted(stopped.items())))
    assert set(stopped) == set(KEVENTING_SERVICES)
    assert all(t < 10 for t in stopped.values()), stopped


def test_down_leaves_no_container(compose: Compose) -> None:
    compose("down", "--volumes", "--timeout", "30", timeout=120)
    print(f"\ncompose down: {compose.timings['down --volumes --timeout 30']:.1f} s")
    assert compose.containers() == []
