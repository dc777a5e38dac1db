"""The console in a real browser: Debian's headless Chromium driven by Playwright (never a downloaded
browser). The page shows the quickstart topology, a not-Ready Trigger as such, and an event sent to the
Broker appears in the live tail within 2 s. Screenshots go to the pytest basetemp's console-screenshots/.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Kev, Reaction, RecordingSink
from helpers import broker_doc, ping_source_doc, sink_ref, start_console, trigger_doc
from playwright.sync_api import Browser, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium under Playwright. Its sync API runs an event loop in this thread while open, so
    a test does its asyncio work (applying resources, waiting for readiness) before opening it."""
    # Debian's chromium is a test dependency (.ci/run installs it): its absence fails the test, never skips it.
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.getbasetemp() / "console-screenshots"
    path.mkdir(exist_ok=True)
    return path


def test_console_page_shows_the_quickstart_and_tails_a_sent_event_within_two_seconds(
    kev: Kev, sink: RecordingSink, screenshots: Path
) -> None:
    ns = f"b{uuid.uuid4().hex[:10]}"
    sink.respond_with(f"{ns}/audit", lambda _: Reaction(status=503))
    kev.apply(
        broker_doc("default", ns),
        broker_doc("dead-letters", ns),
        trigger_doc(
            "audit",
            ns,
            "default",
            sink.url(f"{ns}/audit"),
            filter={"attributes": {"type": "dev.console.audit"}},
            delivery={"retry": 0, "deadLetterSink": sink_ref("Broker", "dead-letters")},
        ),
        trigger_doc("event-display", ns, "default", sink.url(f"{ns}/display")),
        trigger_doc("orphan", ns, "missing", sink.url(f"{ns}/orphan")),
        ping_source_doc("heartbeat", ns, sink_ref("Broker", "default"), schedule="0 0 1 1 *"),
    )
    for trigger in ("event-display", "audit"):
        kev.wait_ready("Trigger", trigger, ns)
    kev.wait_ready("PingSource", "heartbeat", ns)
    name = f"console-{ns}"
    url = start_console(kev, name)
    try:
        with chromium() as browser:
            see_the_console(browser, kev, url, ns, screenshots)
    finally:
        kev.stack.stop(name)
        kev.stack.services.pop(name, None)


def see_the_console(browser: Browser, kev: Kev, url: str, ns: str, screenshots: Path) -> None:
    page = browser.new_page(viewport={"width": 1180, "height": 900})
    page.goto(f"{url}/?namespace={ns}")
    graph = page.locator("#topology")
    # The quickstart: Broker → Trigger → subscriber, both Ready; the orphan Trigger and its missing
    # Broker not Ready (the graph refreshes itself until the controller has said so).
    expect(graph.locator(f'g.node[data-id="Broker/{ns}/default"]')).to_have_attribute("data-ready", "True")
    expect(graph.locator(f'g.node[data-id="Trigger/{ns}/event-display"]')).to_have_attribute(
        "data-ready", "True"
    )
    expect(
        graph.locator(f'g.edge[data-source="Broker/{ns}/default"][data-target="Trigger/{ns}/event-display"]')
    )
    orphan = graph.locator(f'g.node[data-id="Trigger/{ns}/orphan"]')
    expect(orphan).to_have_attribute("data-ready", "False")
    expect(orphan).to_have_class("node ready-False")
    expect(orphan.locator("text.state")).to_contain_text("Not ready")
    expect(page.locator(f'#resource-table tr[data-id="Trigger/{ns}/orphan"] > td.ready-False')).to_have_text(
        "False"
    )
    expect(graph.locator(f'g.edge[data-source="PingSource/{ns}/heartbeat"]')).to_have_count(1)
    # The flow meter has measured the Trigger's consumer group: its edge says the lag.
    expect(
        graph.locator(f'g.edge.role-trigger[data-target="Trigger/{ns}/event-display"] text.edge-label')
    ).to_contain_text("lag 0")
    page.screenshot(path=str(screenshots / "console-topology.png"), full_page=True)

    page.select_option("#tail-target", f"Broker/{ns}/default")
    page.fill("#tail-filter", "type LIKE 'dev.console.%'")
    page.click("#tail-start")
    expect(page.locator("#tail-status")).to_contain_text("live on knative-broker-", timeout=15_000)
    event_id = f"browser-{uuid.uuid4().hex[:6]}"
    sent = time.monotonic()
    assert kev.send(ns, "default", event_id, "dev.console.browser").status_code == 202
    row = page.locator(f'#tail tr.tailed[data-id="{event_id}"]')
    row.wait_for(timeout=2_000)
    assert time.monotonic() - sent < 2.0
    expect(row).to_contain_text("dev.console.browser")
    page.screenshot(path=str(screenshots / "console-live-tail.png"), full_page=True)

    page.fill("#tail-filter", "type LIKE")
    page.click("#tail-start")
    expect(page.locator("#tail-status")).to_contain_text("invalid CESQL filter")

    # An event the audit Trigger's subscriber refuses shows up under its dead-letter sink, with the error.
    failed = f"audit-{uuid.uuid4().hex[:6]}"
    assert kev.send(ns, "default", failed, "dev.console.audit").status_code == 202
    dead_letters = page.locator(f'#deadletters .dls[data-egress="Trigger/{ns}/audit"]')
    expect(dead_letters).to_contain_text(f"topic knative-broker-{ns}-dead-letters")
    expect(dead_letters).to_contain_text(failed, timeout=20_000)
    expect(dead_letters).to_contain_text("503")
    page.fill("#tail-filter", "")
    page.click("#tail-start")
    expect(page.locator("#tail-status")).to_contain_text("live on")
    for i in range(3):
        assert kev.send(ns, "default", f"order-{i}", "com.example.order.created").status_code == 202
    expect(page.locator("#tail tr.tailed")).to_have_count(3)
    page.screenshot(path=str(screenshots / "console.png"), full_page=True)
