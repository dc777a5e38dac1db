"""`kev apply --dry-run`, `kev diff` and `kev explain` against the local store on a real Kafka."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml
from conftest import Kev
from helpers import broker_doc, trigger_doc

from kev.stack import kev_command


def run_kev(kev: Kev, *args: str) -> subprocess.CompletedProcess[str]:
    """`kev ARGS` as a user runs it against the test stack (a wide terminal, so that cells are not cut)."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kev.stack.bootstrap_servers,
        "KEVENTING_INSTANCE": kev.stack.instance,
        "COLUMNS": "200",
    }
    return subprocess.run([*kev_command(), *args], env=env, capture_output=True, text=True, timeout=60)


def test_dry_run_and_diff_say_what_would_change_and_write_nothing(kev: Kev, ns: str, tmp_path: Path) -> None:
    kev.apply(broker_doc("default", ns), trigger_doc("t", ns, "default", "http://a.example/"))
    changed = trigger_doc("t", ns, "default", "http://b.example/")
    new = trigger_doc("u", ns, "default", "http://c.example/")
    path = tmp_path / "triggers.yaml"
    path.write_text(yaml.safe_dump_all([broker_doc("default", ns), changed, new]))

    dry = run_kev(kev, "apply", "--dry-run", "-f", str(path))
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert "broker.eventing.knative.dev/default unchanged (dry run)" in lines
    assert "trigger.eventing.knative.dev/t configured (dry run)" in lines
    assert "trigger.eventing.knative.dev/u created (dry run)" in lines
    assert "-    uri: http://a.example/" in lines and "+    uri: http://b.example/" in lines
    # Nothing was written.
    stored = kev.get("Trigger", "t", ns)
    assert stored is not None and stored.spec.subscriber.uri == "http://a.example/"
    assert kev.get("Trigger", "u", ns) is None

    differs = run_kev(kev, "diff", "-f", str(path))
    assert differs.returncode == 1, differs.stderr
    assert f"--- stored Trigger/{ns}/t" in differs.stdout and "+    uri: http://b.example/" in differs.stdout
    assert "Broker" not in differs.stdout

    assert run_kev(kev, "apply", "-f", str(path)).returncode == 0
    same = run_kev(kev, "diff", "-f", str(path))
    assert (same.returncode, same.stdout) == (0, "")


def test_dry_run_refuses_invalid_documents_like_apply(kev: Kev, ns: str, tmp_path: Path) -> None:
    bad = trigger_doc("t", ns, "default", "http://a.example/", delivery={"retry": -1})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = run_kev(kev, "apply", "--dry-run", "-f", str(path))
    assert result.returncode == 1
    assert "spec.delivery.retry" in result.stderr


def test_explain_lists_the_fields_served_for_a_kind(kev: Kev) -> None:
    result = run_kev(kev, "explain", "trigger")
    assert result.returncode == 0, result.stderr
    assert "VERSIONS: eventing.knative.dev/v1" in result.stdout
    lines = result.stdout.splitlines()
    assert "spec.delivery.backoffPolicy <string> one of: linear, exponential" in lines
    assert "spec.subscriber.uri <string>" in lines
    unknown = run_kev(kev, "explain", "nosuchkind")
    assert unknown.returncode == 1 and "nosuchkind" in unknown.stderr
