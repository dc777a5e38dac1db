"""A real Prometheus (Debian's ``prometheus`` package) scrapes every service of the running stack after a
short load: every query of every panel of the shipped Grafana dashboard is valid and returns data, and the
chart's recording and alerting rules pass ``promtool`` and evaluate without error.

The dashboard's Grafana placeholders are substituted as Grafana would: ``$namespace`` by the test's own
namespace (so each namespaced panel must show this test's series, not another test's), ``$__rate_interval``
by 20s (Prometheus scrapes every second here) and ``$__range`` by 1h (the dashboard's default range).
Each query is an instant query at the latest scrape, retried until it has data or a minute has passed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import Kev, Reaction, Received, RecordingSink
from helpers import broker_doc, ping_source_doc, trigger_doc

from kev.kafka.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "charts" / "keventing" / "dashboards").glob("*.json"))
RULES = ROOT / "charts" / "keventing" / "rules" / "keventing.rules.yml"
RATE_INTERVAL = "20s"
RANGE = "1h"
T0 = "2030-01-01T00:00:30+00:00"  # half a minute before a PingSource's "* * * * *" tick


def _tool(name: str) -> str:
    path = shutil.which(name)
    # A missing tool fails the test (CI installs it): nothing here is skipped.
    assert path, f"{name} is not installed: `apt-get install prometheus` (Debian's; .ci/run installs it)"
    return path


def test_the_rules_pass_promtool() -> None:
    result = subprocess.run(
        [_tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in yaml.safe_load(RULES.read_text())["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


# ------------------------------------------------------------------------------------------ Prometheus


class Prometheus:
    """A Prometheus process of the test's own: loopback, a free port, its own config and data directory."""

    def __init__(self, directory: Path, targets: dict[str, int]) -> None:
        self.port = free_port()
        self.log_path = directory / "prometheus.log"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": f"keventing-{service}",
                    "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"service": service}}],
                }
                for service, port in targets.items()
            ],
        }
        config_path = directory / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.argv = [
            _tool("prometheus"),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"prometheus exited: {self.log()}"
            try:
                if self.http.get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"prometheus not ready after {timeout} s: {self.log()}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.http.close()

    def log(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])

    def api(self, path: str, **params: Any) -> Any:
        """The ``data`` of a successful answer; raises with Prometheus' error otherwise."""
        answer = self.http.get(f"/api/v1/{path}", params=params)
        body = answer.json()
        if body.get("status") != "success":
            raise QueryError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]


class QueryError(Exception):
    pass


@pytest.fixture(scope="module")
def prometheus(kev: Kev, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), kev.stack.ports)  # every service
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -------------------------------------------------------------------------------------------- dashboard


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel!r} [{self.ref_id}]: {self.expr}"


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def dashboard_queries() -> list[Query]:
    found = []
    for path in DASHBOARDS:
        for panel in _panels(json.loads(path.read_text())["panels"]):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append(Query(path.name, panel["title"], target["refId"], target["expr"]))
    return found


def substituted(expr: str, namespace: str) -> str:
    """The query Grafana sends: its placeholders replaced (see the module's docstring)."""
    for placeholder, value in (
        ("$__rate_interval", RATE_INTERVAL),
        ("$__range", RANGE),
        ("${namespace}", namespace),
        ("$namespace", namespace),
    ):
        expr = expr.replace(placeholder, value)
    assert "$" not in expr, f"a Grafana placeholder the test does not know in {expr!r}"
    return expr


def test_the_dashboards_have_queries() -> None:
    assert DASHBOARDS, "no dashboard in charts/keventing/dashboards"
    assert len(dashboard_queries()) > 20


# ----------------------------------------------------------------------------------------------- load


def _reply(received: Received) -> Reaction:
    event_id = received.event.id if received.event is not None else "unknown"
    headers = {
        "ce-specversion": "1.0",
        "ce-id": f"reply-{event_id}",
        "ce-type": "order.confirmed",
        "ce-source": "/replier",
    }
    return Reaction(200, b"{}", headers)


def _load(kev: Kev, sink: RecordingSink, prometheus: Prometheus, ns: str, events: int) -> None:
    """A Broker and Triggers such that every series the dashboard shows exists in ``ns``: deliveries,
    replies, a filter that selects nothing, retries into a dead-letter sink, drops, a Trigger that cannot be
    Ready, a PingSource's events, and ingress rejections."""
    created = {"attributes": {"type": "order.created"}}
    sink.respond_with(f"{ns}/failing", lambda _: Reaction(500))
    sink.respond_with(f"{ns}/dropping", lambda _: Reaction(500))
    sink.respond_with(f"{ns}/replying", _reply)
    retry_then_dead_letter = {
        "retry": 1,
        "backoffDelay": "PT0.05S",
        "deadLetterSink": {"uri": sink.url(f"{ns}/dls")},
    }
    kev.apply(
        broker_doc("default", ns),
        trigger_doc("all", ns, "default", sink.url(f"{ns}/all")),
        trigger_doc("replying", ns, "default", sink.url(f"{ns}/replying"), filter=created),
        trigger_doc(
            "never", ns, "default", sink.url(f"{ns}/never"), filter={"attributes": {"type": "never"}}
        ),
        trigger_doc(
            "failing",
            ns,
            "default",
            sink.url(f"{ns}/failing"),
            filter=created,
            delivery=retry_then_dead_letter,
        ),
        trigger_doc(
            "dropping", ns, "default", sink.url(f"{ns}/dropping"), filter=created, delivery={"retry": 0}
        ),
        trigger_doc("orphan", ns, "missing", sink.url(f"{ns}/orphan")),  # its Broker does not exist
        ping_source_doc("heartbeat", ns, {"uri": sink.url(f"{ns}/ping")}, schedule="* * * * *"),
    )
    for name in ("all", "replying", "never", "failing", "dropping"):
        kev.wait_ready("Trigger", name, ns)
    kev.wait_ready("PingSource", "heartbeat", ns)

    # The counters alerts watch start at 0: once Prometheus has scraped the zeros, rate() and increase()
    # count every event of the load (a Prometheus that scrapes less often sees the same in the long run).
    def scraped_zeros() -> bool:
        query = f'keventing_dispatcher_dead_lettered_total{{namespace_name="{ns}", name=~"failing|dropping"}}'
        return len(prometheus.api("query", query=query)["result"]) == 2

    kev.wait_for(scraped_zeros, what="Prometheus to scrape the Triggers' zero counts")

    for n in range(events):
        assert kev.send(ns, "default", f"order-{n}", "order.created").status_code == 202
    no_type = {
        "ce-specversion": "1.0",
        "ce-id": "x",
        "ce-source": "/tests",
        "content-type": "application/json",
    }
    invalid = kev.http.post(kev.broker_url(ns, "default"), headers=no_type, content=b"{}")
    assert invalid.status_code == 400, invalid.text

    runner = f"http://127.0.0.1:{kev.stack.sources_port}"

    def scheduled() -> bool:
        pings = kev.http.get(f"{runner}/sources").json()["pings"]
        return f"PingSource/{ns}/heartbeat" in {p["id"] for p in pings}

    kev.wait_for(scheduled, what="the PingSource to be scheduled")
    assert kev.http.post(f"{runner}/clock", json={"now": T0}).status_code == 200
    assert kev.http.post(f"{runner}/clock", json={"advance": 60}).json()["fired"] >= 1

    sink.wait_for(f"{ns}/all", 2 * events)  # the events and their replies
    sink.wait_for(f"{ns}/dls", events)
    sink.wait_for(f"{ns}/dropping", events)
    sink.wait_for(f"{ns}/ping", 1)


# ------------------------------------------------------------------------------------------------ test


def _evaluate(prometheus: Prometheus, queries: list[Query], ns: str, timeout: float) -> dict[Query, str]:
    """Each query's problem ("no data" or Prometheus' error) once ``timeout`` is up; {} when all have data."""
    problems: dict[Query, str] = {}
    pending = list(queries)
    deadline = time.monotonic() + timeout
    while pending:
        problems = {}
        for query in pending:
            try:
                if not prometheus.api("query", query=substituted(query.expr, ns))["result"]:
                    problems[query] = "no data"
            except QueryError as err:
                problems[query] = str(err)
        pending = list(problems)
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(1)
    return problems


def test_every_dashboard_query_returns_data_and_every_rule_evaluates_on_a_real_prometheus(
    prometheus: Prometheus, kev: Kev, sink: RecordingSink, ns: str
) -> None:
    def targets_up() -> bool:
        active = prometheus.api("targets")["activeTargets"]
        return len(active) == len(kev.stack.ports) and all(t["health"] == "up" for t in active)

    kev.wait_for(targets_up, timeout=30, what="Prometheus to scrape every service")
    try:
        _load(kev, sink, prometheus, ns, events=20)

        problems = _evaluate(prometheus, dashboard_queries(), ns, timeout=60)
        assert not problems, "panels without data or with an invalid query:\n" + "\n".join(
            f"  {query}\n    -> {problem}" for query, problem in problems.items()
        )
        # The $namespace variable (label_values(event_count_total, namespace_name)) offers this namespace.
        assert ns in prometheus.api("label/namespace_name/values", **{"match[]": "event_count_total"})

        # Every rule of the file is loaded and has been evaluated without error.
        def evaluated() -> list[dict[str, Any]] | None:
            rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
            done = all(not r["lastEvaluation"].startswith("0001-") for r in rules)
            return rules if rules and done else None

        rules = kev.wait_for(evaluated, timeout=30, what="every rule to be evaluated")
        expected = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
        assert len(rules) == expected
        failed = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
        assert not failed, f"rules that failed to evaluate: {failed}"

        # The alerts see this test's troubles: pending while their `for:` runs, firing at once without one.
        wanted = {
            ("KeventingResourceNotReady", "orphan"),
            ("KeventingDeadLettersRising", "failing"),
            ("KeventingEventsDropped", "dropping"),
        }
        states: dict[tuple[str, str], str] = {}

        def alerts() -> bool:
            states.clear()
            for alert in prometheus.api("alerts")["alerts"]:
                if alert["labels"].get("namespace_name") == ns:
                    states[(alert["labels"]["alertname"], alert["labels"].get("name", ""))] = alert["state"]
            return wanted <= set(states)

        deadline = time.monotonic() + 30
        while not alerts():
            assert time.monotonic() < deadline, (
                f"not active: {sorted(wanted - set(states))}; active: {states}"
            )
            time.sleep(0.5)
        assert states[("KeventingResourceNotReady", "orphan")] == "pending"
        assert states[("KeventingEventsDropped", "dropping")] == "firing"
        assert ("KeventingResourceNotReady", "all") not in states
        lag = prometheus.api("query", query=f'keventing:consumer_lag:sum{{namespace_name="{ns}"}}')["result"]
        assert {s["metric"]["name"] for s in lag} >= {"all", "failing", "dropping"}
    except AssertionError as err:
        raise AssertionError(f"{err}\nprometheus log (tail):\n{prometheus.log()}") from err
    finally:
        kev.delete("PingSource", "heartbeat", ns)
