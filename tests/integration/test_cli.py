"""`kev apply --dry-run`, `kev diff` and `kev explain` against the local store on a real Kafka."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from conftest import Kev
from helpers import broker_doc, trigger_doc
from knative_corpus import CORPUS, EXPECTED_REFUSALS, corpus_files


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


def _dry_run_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.endswith(" (dry run)")]


def test_dry_run_accepts_every_example(kev: Kev) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    result = kev.cli("apply", "--dry-run", "-f", str(examples))
    assert result.returncode == 0, result.stderr
    documents = [d for f in sorted(examples.rglob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    assert len(documents) >= 15 and len(_dry_run_lines(result)) == len(documents)


def test_dry_run_on_the_knative_docs_corpus(kev: Kev, tmp_path: Path) -> None:
    """What `kev apply --dry-run` prints for the documents copied from Knative's docs: every one accepted
    but the expected refusals, each refused with its message (tests/knative_corpus.py says why)."""
    accepted = tmp_path / "accepted"
    accepted.mkdir()
    files = corpus_files()
    for path in files:
        if path.name not in EXPECTED_REFUSALS:
            (accepted / path.name).write_text(path.read_text())
    result = kev.cli("apply", "--dry-run", "-f", str(accepted))
    assert result.returncode == 0, result.stderr
    assert len(_dry_run_lines(result)) == len(files) - len(EXPECTED_REFUSALS)
    # Accepted, every field applied as Knative would (kafka-source-2's consumers: 12 too); only the JobSinks
    # are said to run in Kubernetes mode only (this store is the local one).
    warned = " ".join(result.stderr.split())
    job_sinks = ("job-sink-logger", "job-sink-custom-mount-path", "job-sink-success", "job-sink-failure")
    for name in job_sinks:
        assert (
            f"Warning: jobsink.sinks.knative.dev/{name}: JobSink runs in Kubernetes mode only: the local store "
            "keeps it, but it is never Ready here (reason KubernetesOnly)"
        ) in warned
    assert warned.count("Warning: ") == len(job_sinks)
    assert "spec.consumers" not in warned

    # The whole corpus: refused (exit 1, nothing compared), every refusal printed with its message.
    everything = kev.cli("apply", "--dry-run", "-f", str(CORPUS))
    assert everything.returncode == 1 and _dry_run_lines(everything) == []
    printed = " ".join(everything.stderr.split())
    for name, refusal in EXPECTED_REFUSALS.items():
        document = yaml.safe_load((CORPUS / name).read_text())
        label = (document.get("metadata") or {}).get("name", "?")
        expected = f"{CORPUS / name}: {document['kind']} {label!r} is invalid: {refusal.message}"
        assert " ".join(expected.split()) in printed, name
    assert printed.count(" is invalid: ") == len(EXPECTED_REFUSALS)
