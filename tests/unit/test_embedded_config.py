"""Pure tests of the embedded-Kafka launcher: paths, properties, jar cache and CLI wiring. No JVM, no Maven."""

from __future__ import annotations

import base64
import os
import socket
import stat
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kev.cli import kafka as kafka_cli
from kev.kafka.embedded import (
    JVM_DIR,
    KAFKA_VERSION,
    EmbeddedKafka,
    EmbeddedKafkaError,
    default_cache_dir,
    free_port,
    java_executable,
    kafka_version,
    new_cluster_id,
    render_properties,
    server_properties,
    tail,
)

# ---- cache dir resolution ------------------------------------------------------------------------------


def test_cache_dir_prefers_keventing_cache_dir(tmp_path: Path) -> None:
    env = {"KEVENTING_CACHE_DIR": str(tmp_path / "kc"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert default_cache_dir(env) == tmp_path / "kc"


def test_cache_dir_falls_back_to_xdg(tmp_path: Path) -> None:
    assert default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "keventing"


def test_cache_dir_defaults_to_home_cache() -> None:
    assert default_cache_dir({}) == Path.home() / ".cache" / "keventing"


def test_empty_env_values_are_ignored(tmp_path: Path) -> None:
    assert (
        default_cache_dir({"KEVENTING_CACHE_DIR": "", "XDG_CACHE_HOME": str(tmp_path)})
        == tmp_path / "keventing"
    )


def test_instance_uses_environment_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEVENTING_CACHE_DIR", str(tmp_path))
    kafka = EmbeddedKafka(port=19092)
    assert kafka.libs_dir == tmp_path / "kafka" / kafka.version / "libs"
    assert kafka.data_dir == tmp_path / "kafka" / "data-19092"


# ---- instance defaults ---------------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    kafka = EmbeddedKafka(cache_dir=tmp_path)
    assert kafka.port == 9092
    assert kafka.controller_port == 9093
    assert kafka.bootstrap_servers == "127.0.0.1:9092"
    assert kafka.heap == "768m"
    assert kafka.version == KAFKA_VERSION
    assert kafka.data_dir == tmp_path / "kafka" / "data-9092"
    assert kafka.dist_dir == tmp_path / "kafka" / KAFKA_VERSION
    assert kafka.pid_file.parent == kafka.data_dir
    assert kafka.log_file == kafka.data_dir / "kafka.log"


def test_explicit_ports_and_data_dir(tmp_path: Path) -> None:
    kafka = EmbeddedKafka(
        port=29092, controller_port=39093, data_dir=tmp_path / "d", cache_dir=tmp_path / "c"
    )
    assert kafka.bootstrap_servers == "127.0.0.1:29092"
    assert kafka.controller_port == 39093
    assert kafka.data_dir == tmp_path / "d"


def test_relative_data_dir_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The path is matched against the JVM's command line later, so it must not depend on the cwd.
    monkeypatch.chdir(tmp_path)
    kafka = EmbeddedKafka(data_dir=Path("rel"), cache_dir=tmp_path)
    assert kafka.data_dir == tmp_path / "rel"
    assert kafka.data_dir.is_absolute()


def test_constructor_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        EmbeddedKafka(9092)  # type: ignore[misc]


@pytest.mark.parametrize("heap", ["", "lots", "768", "1G", "512m", "0m"])
def test_heap_validation(heap: str, tmp_path: Path) -> None:
    if heap in ("768", "1G", "512m"):
        assert EmbeddedKafka(heap=heap, cache_dir=tmp_path).heap == heap
    else:
        with pytest.raises(ValueError):
            EmbeddedKafka(heap=heap, cache_dir=tmp_path)


def test_same_port_for_controller_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        EmbeddedKafka(port=9092, controller_port=9092, cache_dir=tmp_path)


def test_version_override(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kafka_version({}) == KAFKA_VERSION
    assert kafka_version({"KEVENTING_KAFKA_VERSION": "4.0.0"}) == "4.0.0"
    monkeypatch.setenv("KEVENTING_KAFKA_VERSION", "4.1.0")
    assert EmbeddedKafka().version == "4.1.0"


def test_kafka_version_is_4x() -> None:
    assert KAFKA_VERSION.split(".")[0] == "4"


# ---- java -----------------------------------------------------------------------------------------------


def test_java_from_java_home() -> None:
    assert java_executable({"JAVA_HOME": "/opt/jdk"}) == "/opt/jdk/bin/java"


def test_java_from_path(tmp_path: Path) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert java_executable({"PATH": str(tmp_path)}) == str(fake)
    assert java_executable({"PATH": str(tmp_path / "empty")}) == "java"


# ---- server.properties ----------------------------------------------------------------------------------


def _props(tmp_path: Path) -> dict[str, str]:
    return server_properties(port=19092, controller_port=19093, log_dirs=tmp_path / "logs")


def test_properties_single_node_kraft(tmp_path: Path) -> None:
    props = _props(tmp_path)
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["log.dirs"] == str(tmp_path / "logs")


def test_properties_listen_on_loopback_only(tmp_path: Path) -> None:
    props = _props(tmp_path)
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert "0.0.0.0" not in render_properties(props)


def test_properties_tuned_for_one_node_and_fast_tests(tmp_path: Path) -> None:
    props = _props(tmp_path)
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "default.replication.factor",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert int(props["offsets.topic.num.partitions"]) <= 10
    assert props["auto.create.topics.enable"] == "false"
    assert props["num.partitions"] == "1"
    assert "message.max.bytes" not in props  # deliberately left at Kafka's default


def test_render_properties_round_trips() -> None:
    text = render_properties({"a.b": "1", "log.dirs": r"C:\kafka\logs"})
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ["a.b=1", r"log.dirs=C:\\kafka\\logs"]
    assert text.endswith("\n")


# ---- misc helpers ---------------------------------------------------------------------------------------


def test_cluster_id_format() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cid in ids:
        assert len(cid) == 22 and not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_tail(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(path, 3) == "line 97\nline 98\nline 99"
    assert tail(tmp_path / "missing") == ""


def test_jvm_files_are_valid_xml() -> None:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom = ET.parse(JVM_DIR / "pom.xml").getroot()
    artifacts = {dep.findtext("m:artifactId", namespaces=ns) for dep in pom.iterfind(".//m:dependency", ns)}
    assert {"kafka_2.13", "log4j-core", "log4j-slf4j-impl"} <= artifacts
    assert pom.findtext("m:properties/m:kafka.version", namespaces=ns) == KAFKA_VERSION
    log4j = ET.parse(JVM_DIR / "log4j2.xml").getroot()
    assert "${sys:kafka.logs.dir" in ET.tostring(log4j, encoding="unicode")


# ---- jar cache ------------------------------------------------------------------------------------------

FAKE_MVN = """#!/bin/sh
# Stand-in for Maven: records its arguments and "copies" one jar into -DoutputDirectory.
echo "$@" >> "$FAKE_MVN_CALLS"
[ -n "$FAKE_MVN_FAIL" ] && { echo "[ERROR] Could not resolve dependencies" ; exit 1 ; }
sleep 0.3
for arg in "$@"; do
  case "$arg" in -DoutputDirectory=*) out="${arg#-DoutputDirectory=}" ;; esac
done
mkdir -p "$out" && echo jar > "$out/kafka_2.13-fake.jar"
"""


@pytest.fixture
def fake_mvn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    mvn.write_text(FAKE_MVN)
    mvn.chmod(mvn.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "mvn-calls"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MVN_CALLS", str(calls))
    return calls


def _calls(calls: Path) -> list[str]:
    return calls.read_text().splitlines() if calls.exists() else []


def test_ensure_jars_runs_maven_once_and_writes_marker(tmp_path: Path, fake_mvn: Path) -> None:
    messages: list[str] = []
    kafka = EmbeddedKafka(cache_dir=tmp_path / "cache", progress=messages.append)
    jars = kafka.ensure_jars()
    assert [jar.name for jar in jars] == ["kafka_2.13-fake.jar"]
    assert jars[0].parent == kafka.libs_dir
    assert (kafka.dist_dir / ".complete").is_file()
    assert any("first run only" in message for message in messages)
    (args,) = _calls(fake_mvn)
    assert "dependency:copy-dependencies" in args
    assert "-DincludeScope=runtime" in args
    assert f"-Dkafka.version={KAFKA_VERSION}" in args
    # The scratch dir Maven worked in is gone; only libs/, the marker, the lock and the log remain.
    assert not list(kafka.dist_dir.glob("resolve-*"))

    assert EmbeddedKafka(cache_dir=tmp_path / "cache").ensure_jars() == jars
    assert len(_calls(fake_mvn)) == 1  # warm cache: Maven not called again


def test_warm_cache_never_calls_maven(tmp_path: Path, fake_mvn: Path) -> None:
    kafka = EmbeddedKafka(cache_dir=tmp_path)
    kafka.libs_dir.mkdir(parents=True)
    (kafka.libs_dir / "a.jar").write_text("")
    (kafka.dist_dir / ".complete").write_text("")
    assert kafka.ensure_jars() == [kafka.libs_dir / "a.jar"]
    assert kafka.jars_cached()
    assert _calls(fake_mvn) == []


def test_jars_without_marker_are_resolved_again(tmp_path: Path, fake_mvn: Path) -> None:
    # libs/ without the marker means an interrupted copy: it must be replaced, not trusted.
    kafka = EmbeddedKafka(cache_dir=tmp_path)
    kafka.libs_dir.mkdir(parents=True)
    (kafka.libs_dir / "partial.jar").write_text("")
    assert [jar.name for jar in kafka.ensure_jars()] == ["kafka_2.13-fake.jar"]
    assert len(_calls(fake_mvn)) == 1


def test_concurrent_resolution_runs_maven_once(tmp_path: Path, fake_mvn: Path) -> None:
    results: list[list[Path]] = []
    errors: list[BaseException] = []

    def resolve() -> None:
        try:
            results.append(EmbeddedKafka(cache_dir=tmp_path).ensure_jars())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=resolve) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(_calls(fake_mvn)) == 1
    assert len(results) == 4 and all(result == results[0] for result in results)


def test_maven_failure_is_reported_and_leaves_no_marker(
    tmp_path: Path, fake_mvn: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MVN_FAIL", "1")
    kafka = EmbeddedKafka(cache_dir=tmp_path)
    with pytest.raises(EmbeddedKafkaError, match="Could not resolve dependencies"):
        kafka.ensure_jars()
    assert not (kafka.dist_dir / ".complete").exists()
    assert not kafka.jars_cached()


def test_missing_maven_gives_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    with pytest.raises(EmbeddedKafkaError, match="Maven"):
        EmbeddedKafka(cache_dir=tmp_path).ensure_jars()


# ---- process bookkeeping ------------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_not_running_without_pid_file(tmp_path: Path) -> None:
    kafka = EmbeddedKafka(data_dir=tmp_path, cache_dir=tmp_path)
    assert not kafka.is_running()
    kafka.stop()  # no-op
    status = kafka.status()
    assert status["running"] is False and status["pid"] is None
    assert set(status) >= {"running", "pid", "bootstrap_servers", "version", "data_dir", "log_file"}


@pytest.mark.parametrize("pid_source", ["dead", "unrelated", "garbage"])
def test_stale_pid_file_is_not_running(tmp_path: Path, pid_source: str) -> None:
    kafka = EmbeddedKafka(data_dir=tmp_path, cache_dir=tmp_path)
    # "unrelated": a live process that is not this Kafka (the pid was reused) must never be signalled.
    pid = {"dead": str(_dead_pid()), "unrelated": str(os.getpid()), "garbage": "not-a-pid"}[pid_source]
    kafka.pid_file.write_text(pid)
    assert not kafka.is_running()
    kafka.stop()
    assert not kafka.pid_file.exists()


def test_start_fails_fast_when_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        kafka = EmbeddedKafka(
            port=port, controller_port=free_port(), data_dir=tmp_path / "d", cache_dir=tmp_path
        )
        with pytest.raises(EmbeddedKafkaError, match=f"port {port} .* already in use"):
            kafka.start()
    assert not (tmp_path / "d").exists()  # failed before creating anything (or downloading)


# ---- CLI ------------------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_start_with_external_cluster_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-0:9092")
    monkeypatch.setenv("KEVENTING_CACHE_DIR", str(tmp_path))
    result = runner.invoke(kafka_cli.app, ["start"])
    assert result.exit_code == 0
    assert "External Kafka configured" in result.output and "broker-0:9092" in result.output
    assert list(tmp_path.iterdir()) == []  # nothing resolved, formatted or started


def test_cli_status_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-0:9092")
    monkeypatch.setenv("KEVENTING_CACHE_DIR", str(tmp_path))
    result = runner.invoke(kafka_cli.app, ["status", "--port", "19092", "--json"])
    assert result.exit_code == 0
    assert '"running": false' in result.output
    assert '"external_bootstrap_servers": "broker-0:9092"' in result.output
    assert str(tmp_path / "kafka" / "data-19092") in result.output


def test_cli_status_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    result = runner.invoke(kafka_cli.app, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "stopped" in result.output


def test_cli_stop_when_not_running(tmp_path: Path) -> None:
    result = runner.invoke(kafka_cli.app, ["stop", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "not running" in result.output


def test_cli_start_failure_exits_non_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = runner.invoke(
            kafka_cli.app, ["start", "--port", str(port), "--data-dir", str(tmp_path / "d")]
        )
    assert result.exit_code == 1
    assert "already in use" in result.output


def test_cli_rejects_bad_heap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    result = runner.invoke(kafka_cli.app, ["start", "--data-dir", str(tmp_path), "--heap", "lots"])
    assert result.exit_code == 1
    assert "heap" in result.output


def test_a_quorum_node_names_every_voter_and_replicates_topics_three_times() -> None:
    from kev.kafka.embedded import Quorum, server_properties

    quorum = Quorum("abc", 2, ((1, 9101), (2, 9103), (3, 9105)))
    props = server_properties(port=9102, controller_port=9103, log_dirs=Path("/x"), node_id=2, quorum=quorum)
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9101,2@127.0.0.1:9103,3@127.0.0.1:9105"
    assert "controller.quorum.bootstrap.servers" not in props
    assert props["default.replication.factor"] == props["offsets.topic.replication.factor"] == "3"
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"


def test_a_cluster_places_its_nodes_on_consecutive_port_pairs(tmp_path: Path) -> None:
    from kev.kafka.embedded import EmbeddedKafkaCluster

    cluster = EmbeddedKafkaCluster(nodes=3, port=29092, data_dir=tmp_path)
    assert cluster.bootstrap_servers == "127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096"
    assert [n.controller_port for n in cluster.nodes] == [29093, 29095, 29097]
    assert {n.quorum.cluster_id for n in cluster.nodes if n.quorum} == {cluster.nodes[0].quorum.cluster_id}  # type: ignore[union-attr]
    assert cluster.replication_factor == 3
    with pytest.raises(ValueError, match="at least 2 nodes"):
        EmbeddedKafkaCluster(nodes=1, data_dir=tmp_path)
