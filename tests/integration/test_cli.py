"""`kev apply --dry-run`, `kev diff` and `kev explain` against the local store on a real Kafka."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import Kev
from helpers import broker_doc, trigger_doc


def test_dry_run_and_diff_say_what_would_change_and_write_nothing(kev: Kev, ns: str, tmp_path: Path) -> None:
    kev.apply(broker_doc("default", ns), trigger_doc("t", ns, "default", "http://a.example/"))
    changed = trigger_doc("t", ns, "default", "http://b.example/")
    new = trigger_doc("u", ns, "default", "http://c.example/")
    path = tmp_path / "triggers.yaml"
    path.write_text(yaml.safe_dump_all([broker_doc("default", ns), changed, new]))

    dry = kev.cli("apply", "--dry-run", "-f", str(path))
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

    differs = kev.cli("diff", "-f", str(path))
    assert differs.returncode == 1, differs.stderr
    assert f"--- stored Trigger/{ns}/t" in differs.stdout and "+    uri: http://b.example/" in differs.stdout
    assert "Broker" not in differs.stdout

    assert kev.cli("apply", "-f", str(path)).returncode == 0
    same = kev.cli("diff", "-f", str(path))
    assert (same.returncode, same.stdout) == (0, "")


def test_dry_run_refuses_invalid_documents_like_apply(kev: Kev, ns: str, tmp_path: Path) -> None:
    bad = trigger_doc("t", ns, "default", "http://a.example/", delivery={"retry": -1})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = kev.cli("apply", "--dry-run", "-f", str(path))
    assert result.returncode == 1
    assert "spec.delivery.retry" in result.stderr


def test_explain_lists_the_fields_served_for_a_kind(kev: Kev) -> None:
    result = kev.cli("explain", "trigger")
    assert result.returncode == 0, result.stderr
    assert "VERSIONS: eventing.knative.dev/v1" in result.stdout
    lines = result.stdout.splitlines()
    assert "spec.delivery.backoffPolicy <string> one of: linear, exponential" in lines
    assert "spec.subscriber.uri <string>" in lines
    unknown = kev.cli("explain", "nosuchkind")
    assert unknown.returncode == 1 and "nosuchkind" in unknown.stderr
