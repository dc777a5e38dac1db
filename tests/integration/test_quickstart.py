"""The quickstart end to end: `kev up --demo` (what `make demo` runs) and event-display's output."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from conftest import Kev
from helpers import broker_doc, trigger_doc

from kev.kafka.embedded import free_port
from kev.stack import Service, kev_command

REPO = Path(__file__).resolve().parents[2]
EXPECTED_BLOCK = (
    "☁️  cloudevents.Event\n"
    "Context Attributes,\n"
    "  specversion: 1.0\n"
    "  type: com.icloud2native.sayhievent\n"
    "  source: sendoff\n"
    "  id: say-hello\n"
    "  time: 2023-12-01T11:35:56.7181741Z\n"
    "  datacontenttype: application/json\n"
    "Data,\n"
    "  {\n"
    '    "msg": "Hello littlyboy Knative!"\n'
    "  }\n"
)


def test_event_display_prints_the_quickstart_event_sent_through_a_broker(kev: Kev, ns: str) -> None:
    port = free_port()
    display = kev.stack.start(
        Service(
            "event-display-" + ns,
            [*kev_command(), "event-display", "--port", str(port)],
            f"http://127.0.0.1:{port}/healthz",
        )
    )
    try:
        kev.stack.wait_ready(30, [display.name])
        kev.apply(
            broker_doc("default", ns), trigger_doc("event-display", ns, "default", f"http://127.0.0.1:{port}")
        )
        kev.wait_ready("Trigger", "event-display", ns)
        response = kev.http.post(
            kev.broker_url(ns, "default"),
            headers={
                "Ce-Id": "say-hello",
                "Ce-Specversion": "1.0",
                "Ce-Type": "com.icloud2native.sayhievent",
                "Ce-Time": "2023-12-01T11:35:56.7181741Z",
                "Ce-Source": "sendoff",
                "Content-Type": "application/json",
            },
            content=b'{"msg":"Hello littlyboy Knative!"}',
        )
        assert response.status_code == 202
        assert display.log_path is not None
        kev.wait_for(
            lambda: "say-hello" in display.log_path.read_text(), what="event-display to print the event"
        )
        assert EXPECTED_BLOCK in display.log_path.read_text()
    finally:
        kev.stack.stop(display.name)


def test_kev_up_demo_runs_the_quickstart_and_exits_zero(kafka: str, tmp_path: Path) -> None:
    # kev up as a user runs it: no contract key in the environment, so it makes its own beside its logs.
    env = {
        **{k: v for k, v in os.environ.items() if k != "KEVENTING_CONTRACT_KEY"},
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "KEVENTING_INSTANCE": f"demo-{uuid.uuid4().hex[:6]}",
        "KEVENTING_LOG_DIR": str(tmp_path / "logs"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "kev.cli.main", "up", "--demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert EXPECTED_BLOCK in result.stdout
    assert "202 Accepted" in result.stdout + result.stderr
    assert (tmp_path / "contract.key").stat().st_mode & 0o777 == 0o600
