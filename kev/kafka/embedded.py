"""Run a single-node Apache Kafka 4.x broker from its Maven Central jars, without Docker.

The broker's runtime classpath is resolved once with Maven into the user's cache dir, the KRaft log dir is
formatted once, and ``kafka.Kafka`` then runs as a detached JVM (combined broker + controller) listening on
127.0.0.1 only. ``kev kafka start|stop|status`` and the integration tests are built on :class:`EmbeddedKafka`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

__all__ = [
    "DEFAULT_HEAP",
    "KAFKA_VERSION",
    "EmbeddedKafka",
    "ListenerSecurity",
    "EmbeddedKafkaError",
    "default_cache_dir",
    "free_port",
    "java_executable",
    "kafka_version",
    "new_cluster_id",
    "probe",
    "render_properties",
    "secured_properties",
    "server_properties",
]

#: Newest Apache Kafka 4.x on Maven Central when this was written; pinned so the cache path is known
#: before resolving and every developer runs the same broker. Override with $KEVENTING_KAFKA_VERSION.
KAFKA_VERSION = "4.4.0"
DEFAULT_HEAP = "768m"

#: pom.xml (classpath resolution) and log4j2.xml (broker logging) ship as package data.
JVM_DIR = Path(__file__).resolve().parent / "jvm"

_MARKER = ".complete"  # written only after the jars were fully copied: its presence means "no Maven needed"
_PID_FILE = "kafka.pid"
_LOG_FILE = "kafka.log"  # log4j2 output (see jvm/log4j2.xml)
_OUT_FILE = "kafka.out"  # raw JVM stdout/stderr: catches failures before log4j2 is up (bad java, OOM...)
_GC_LOG_FILE = "kafkaServer-gc.log"  # the JVM's pauses, one line each (kafka-run-class.sh writes one too)
_PROPERTIES_FILE = "server.properties"
_LOG_DIRS = "kraft-combined-logs"
_HOST = "127.0.0.1"
_PROGRESS_EVERY = 10.0  # seconds between "still resolving…" messages while Maven runs quietly

# Kafka's own kafka-run-class.sh defaults, minus the 1 GiB fixed heap: a dev broker should stay small.
_JVM_OPTS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    # A crashed broker with a log line is easier to diagnose than one wedged in GC.
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

_HEAP_RE = re.compile(r"[1-9][0-9]*[kKmMgG]?")

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


class EmbeddedKafkaError(RuntimeError):
    """The embedded broker could not be resolved, formatted, started or stopped."""


# --------------------------------------------------------------------------------------------------------
# Pure helpers (unit-tested without a JVM)
# --------------------------------------------------------------------------------------------------------


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """keventing's cache root: $KEVENTING_CACHE_DIR, else $XDG_CACHE_HOME/keventing, else ~/.cache/keventing."""
    env = os.environ if env is None else env
    if explicit := env.get("KEVENTING_CACHE_DIR"):
        return Path(explicit).expanduser()
    if xdg := env.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "keventing"
    return Path.home() / ".cache" / "keventing"


def kafka_version(env: Mapping[str, str] | None = None) -> str:
    """The Kafka version to run: $KEVENTING_KAFKA_VERSION if set, else the pinned :data:`KAFKA_VERSION`."""
    env = os.environ if env is None else env
    return env.get("KEVENTING_KAFKA_VERSION") or KAFKA_VERSION


def java_executable(env: Mapping[str, str] | None = None) -> str:
    """``$JAVA_HOME/bin/java`` if JAVA_HOME is set, else ``java`` from PATH (mirrors kafka-run-class.sh)."""
    env = os.environ if env is None else env
    if java_home := env.get("JAVA_HOME"):
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java", path=env.get("PATH")) or "java"


_handed_out: set[int] = set()


def free_port(host: str = _HOST) -> int:
    """A TCP port that was free a moment ago (the usual bind-to-0 trick; racy, but fine for tests), and
    never one this process was given before: the kernel may offer a port again once its socket is closed,
    before whoever it was given to has bound it."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID in URL-safe base64 without padding, like ``kafka-storage random-uuid``."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        # Kafka avoids ids starting with '-' because command-line parsers take them for options.
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True)
class Quorum:
    """This node's place in a multi-node cluster: every node is broker and controller (KRaft combined mode),
    with a static set of voters and one cluster id formatted into every node's storage."""

    cluster_id: str
    node_id: int
    voters: tuple[tuple[int, int], ...]  # (node id, controller port) of every node

    @property
    def replication_factor(self) -> int:
        return min(3, len(self.voters))

    @property
    def min_insync_replicas(self) -> int:
        return max(1, self.replication_factor - 1)

    def properties(self) -> dict[str, str]:
        rf, isr = str(self.replication_factor), str(self.min_insync_replicas)
        return {
            "node.id": str(self.node_id),
            "controller.quorum.voters": ",".join(f"{n}@{_HOST}:{port}" for n, port in self.voters),
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": isr,
            "default.replication.factor": rf,
            # With acks=all, a record is acknowledged once two replicas have it: one node may die.
            "min.insync.replicas": isr,
            # A dead node is fenced, and its partitions led elsewhere, within seconds rather than 9 s.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
        }


def server_properties(
    *, port: int, controller_port: int, log_dirs: Path, node_id: int = 1, quorum: Quorum | None = None
) -> dict[str, str]:
    """``server.properties`` for a combined broker+controller tuned for development and fast tests: one node,
    or one of a ``quorum``'s nodes."""
    props = {
        # KRaft, one process is both broker and the (only) controller.
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.bootstrap.servers": f"{_HOST}:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        # Loopback only: this broker has no authentication and must not be reachable from the network.
        "listeners": f"PLAINTEXT://{_HOST}:{port},CONTROLLER://{_HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{_HOST}:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dirs),
        # A single node cannot host more than one replica of anything.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # Few internal partitions: creating 50 of each on first use costs seconds in every fresh test run.
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.num.partitions": "5",
        # Consumers join immediately instead of waiting 3 s for more members.
        "group.initial.rebalance.delay.ms": "0",
        # keventing creates its topics explicitly; typos must fail rather than silently create topics.
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
    }
    if quorum is not None:
        del props["controller.quorum.bootstrap.servers"]
        props.update(quorum.properties())
    return props


@dataclass(frozen=True)
class ListenerSecurity:
    """A secured client listener instead of PLAINTEXT: SASL_SSL with SCRAM-SHA-512 users, or SSL (with
    ``client_auth``, mTLS: clients must present a certificate the truststore's CA signed).

    The broker's own connections to itself (inter-broker) use the same listener: as the first SCRAM user
    under SASL_SSL, with its own certificate under SSL. ``client`` holds Knative's Secret keys (``user``,
    ``password``, ``ca.crt``, ``user.crt``, ``user.key``) of a client the launcher checks readiness as.
    """

    protocol: Literal["SASL_SSL", "SSL"]
    keystore: Path  # PKCS12: the broker's key and certificate (SAN IP:127.0.0.1)
    keystore_password: str
    truststore: Path  # PEM: the CA the broker trusts (its own certificate's, and clients')
    client: Mapping[str, str]
    scram_users: Mapping[str, str] = field(default_factory=dict)  # user → password (SCRAM-SHA-512)
    client_auth: bool = False

    def format_args(self) -> list[str]:
        """``kafka-storage format`` arguments that create the SCRAM users with the storage (KIP-900)."""
        args = []
        for user, password in self.scram_users.items():
            args += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        return args


def secured_properties(props: Mapping[str, str], port: int, security: ListenerSecurity) -> dict[str, str]:
    """``props`` with the client listener on ``port`` secured as ``security`` says."""
    name = security.protocol
    controller = props["listeners"].split(",")[-1]
    secured = dict(props)
    secured.update(
        {
            "listeners": f"{name}://{_HOST}:{port},{controller}",
            "advertised.listeners": f"{name}://{_HOST}:{port}",
            "inter.broker.listener.name": name,
            "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{name}:{name}",
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(security.keystore),
            "ssl.keystore.password": security.keystore_password,
            "ssl.key.password": security.keystore_password,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(security.truststore),
            "ssl.client.auth": "required" if security.client_auth else "none",
        }
    )
    if name == "SASL_SSL":
        if not security.scram_users:
            raise ValueError("a SASL_SSL listener needs at least one SCRAM user (the broker's own)")
        user, password = next(iter(security.scram_users.items()))
        secured.update(
            {
                "sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required "
                    f'username="{user}" password="{password}";'
                ),
            }
        )
    return secured


def render_properties(props: Mapping[str, str]) -> str:
    """Serialise to Java ``.properties`` syntax (escaping backslashes, the only special char we can emit)."""
    lines = ["# Generated by keventing (kev.kafka.embedded); rewritten on every start."]
    lines += [f"{key}={value.replace(chr(92), chr(92) * 2)}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file, or "" if it does not exist (for error messages)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))  # logs can be large: only read the end
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


@contextlib.contextmanager
def _file_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Exclusive ``flock`` on ``path``; calls ``on_wait`` once if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _port_open(port: int, host: str = _HOST, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (a dead child we launched but nobody reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): trust kill(0)
    # Field 3 is the state; the command name in field 2 may contain spaces, so split after its ')'.
    return stat.rpartition(")")[2].split()[0] != "Z"


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode("utf-8", errors="replace") for part in raw.split(b"\0") if part]


async def _probe_async(bootstrap_servers: str, timeout: float, client: Mapping[str, str] | None) -> bool:
    # Imported lazily: the CLI's `status`/`stop` should not pay for importing aiokafka.
    from aiokafka.admin import AIOKafkaAdminClient

    from keventing.kafka.connection import client_options, connection_from_secret

    admin = AIOKafkaAdminClient(
        **client_options(connection_from_secret(bootstrap_servers, client or {})),
        client_id="keventing-embedded-probe",
        request_timeout_ms=int(timeout * 1000),
    )
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            cluster = await admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except Exception:  # not ready yet: any failure just means "try again"
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def probe(bootstrap_servers: str, timeout: float = 5.0, client: Mapping[str, str] | None = None) -> bool:
    """Whether a Kafka broker answers a metadata request (and lists itself) at ``bootstrap_servers``.

    Runs its own event loop in a worker thread so it also works when called from async code. ``client``:
    the connection's settings in Knative's Secret keys (none: PLAINTEXT).
    """
    result: list[bool] = []

    def run() -> None:
        result.append(asyncio.run(_probe_async(bootstrap_servers, timeout, client)))

    thread = threading.Thread(target=run, name="kafka-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5.0)
    return bool(result and result[0])


# --------------------------------------------------------------------------------------------------------
# The launcher
# --------------------------------------------------------------------------------------------------------


class EmbeddedKafka:
    """A single-node Kafka 4.x (KRaft, combined broker+controller) running as a detached JVM.

    State lives in ``data_dir`` (properties, KRaft log dirs, ``kafka.pid``, ``kafka.log``), so any process
    can find, query and stop a broker that another process started with the same ``data_dir``.
    """

    def __init__(
        self,
        *,
        port: int = 9092,
        controller_port: int | None = None,
        data_dir: Path | None = None,
        cache_dir: Path | None = None,
        heap: str = DEFAULT_HEAP,
        progress: Progress | None = None,
        version: str | None = None,
        security: ListenerSecurity | None = None,
        quorum: Quorum | None = None,
    ) -> None:
        self.port = port
        self.security = security
        self.quorum = quorum
        self.controller_port = controller_port if controller_port is not None else port + 1
        if self.controller_port == self.port:
            raise ValueError("controller_port must differ from port")
        self.version = version or kafka_version()
        self.cache_dir = Path(cache_dir or default_cache_dir()).expanduser().absolute()
        # Absolute, because the path goes into the JVM's command line and is matched against it later.
        self.data_dir = Path(data_dir or self.cache_dir / "kafka" / f"data-{port}").expanduser().absolute()
        if not _HEAP_RE.fullmatch(heap):
            # Checked here because a bad -Xmx only surfaces as a JVM crash after formatting.
            raise ValueError(f"heap must look like 512m or 1g (a -Xmx value), not {heap!r}")
        self.heap = heap
        self._progress = progress
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"EmbeddedKafka(bootstrap_servers={self.bootstrap_servers!r}, data_dir={str(self.data_dir)!r})"

    # ---- paths ------------------------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return f"{_HOST}:{self.port}"

    @property
    def dist_dir(self) -> Path:
        """Per-version jar cache: ``<cache>/kafka/<version>``."""
        return self.cache_dir / "kafka" / self.version

    @property
    def libs_dir(self) -> Path:
        return self.dist_dir / "libs"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / _PID_FILE

    @property
    def log_file(self) -> Path:
        return self.data_dir / _LOG_FILE

    @property
    def out_file(self) -> Path:
        return self.data_dir / _OUT_FILE

    @property
    def gc_log_file(self) -> Path:
        """The broker's garbage-collector log: every pause with its wall-clock end and duration, which is how a
        latency spike downstream is told apart from the broker stopping the world (``bench/``'s end-to-end
        scenario reads it)."""
        return self.data_dir / _GC_LOG_FILE

    @property
    def properties_file(self) -> Path:
        return self.data_dir / _PROPERTIES_FILE

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / _LOG_DIRS

    def _say(self, message: str) -> None:
        log.info("%s", message)
        if self._progress is not None:
            self._progress(message)

    # ---- jars -------------------------------------------------------------------------------------------

    def jars_cached(self) -> bool:
        return (self.dist_dir / _MARKER).is_file() and any(self.libs_dir.glob("*.jar"))

    def ensure_jars(self) -> list[Path]:
        """Return the broker's classpath jars, resolving them with Maven on first use only.

        Concurrent callers (other processes too) serialise on a lock file; whoever comes second finds the
        marker and returns without running Maven.
        """
        if not self.jars_cached():
            with _file_lock(
                self.dist_dir / ".lock",
                on_wait=lambda: self._say("waiting for another process that is resolving the Kafka jars…"),
            ):
                if not self.jars_cached():
                    self._resolve_with_maven()
        return sorted(self.libs_dir.glob("*.jar"))

    def _resolve_with_maven(self) -> None:
        mvn = shutil.which("mvn")
        if mvn is None:
            raise EmbeddedKafkaError(
                "Maven ('mvn') is not on PATH. It is needed once, to download Apache Kafka "
                f"{self.version} from Maven Central into {self.dist_dir}."
            )
        self._say(f"resolving Apache Kafka {self.version} from Maven Central (first run only)…")
        started = time.monotonic()
        self.dist_dir.mkdir(parents=True, exist_ok=True)
        # Work in a scratch dir and rename at the end, so an interrupted run never leaves a half-filled libs/.
        # Copying the pom there also keeps Maven from writing into the (possibly read-only) package dir.
        work = Path(tempfile.mkdtemp(prefix="resolve-", dir=self.dist_dir))
        maven_log = self.dist_dir / "maven.log"
        try:
            shutil.copyfile(JVM_DIR / "pom.xml", work / "pom.xml")
            out = work / "libs"
            cmd = [
                mvn,
                "-q",  # only errors: progress is reported by us, not by thousands of download lines
                "-B",
                "-Dstyle.color=never",
                "-f",
                str(work / "pom.xml"),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={out}",
                f"-Dkafka.version={self.version}",
            ]
            with maven_log.open("wb") as log_fh:
                rc = self._run_quietly(cmd, log_fh, cwd=work, started=started)
            jars = list(out.glob("*.jar")) if out.is_dir() else []
            if rc != 0 or not jars:
                raise EmbeddedKafkaError(
                    f"Maven could not resolve Apache Kafka {self.version} (exit code {rc}). "
                    f"Full output: {maven_log}\n{tail(maven_log, 30)}"
                )
            if self.libs_dir.exists():  # leftover of a run killed between rename and marker
                shutil.rmtree(self.libs_dir)
            os.replace(out, self.libs_dir)
            (self.dist_dir / _MARKER).write_text(f"kafka {self.version}: {len(jars)} jars\n")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._say(f"resolved {len(jars)} jars in {time.monotonic() - started:.1f} s")

    def _run_quietly(self, cmd: list[str], log_fh: IO[bytes], *, cwd: Path, started: float) -> int:
        """Run Maven with output to a log file, reporting elapsed time instead of flooding the terminal."""
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log_fh, stderr=subprocess.STDOUT
        )
        next_report = started + _PROGRESS_EVERY
        try:
            while (rc := proc.poll()) is None:
                time.sleep(0.2)
                if time.monotonic() >= next_report:
                    self._say(f"still resolving Kafka jars… {time.monotonic() - started:.0f} s")
                    next_report += _PROGRESS_EVERY
        except BaseException:  # Ctrl-C included: don't leave Maven running behind us
            proc.kill()
            proc.wait()
            raise
        return rc

    # ---- lifecycle --------------------------------------------------------------------------------------

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _is_ours(self, pid: int) -> bool:
        """Guard against a stale pid file whose pid was reused by an unrelated process."""
        if self._proc is not None and self._proc.pid == pid and self._proc.poll() is not None:
            return False  # our own child exited (poll() also reaps it)
        if not _pid_alive(pid):
            return False
        argv = _cmdline(pid)
        if argv is None:
            return True  # no procfs: best effort
        return "kafka.Kafka" in argv and str(self.properties_file) in argv

    def is_running(self) -> bool:
        pid = self._read_pid()
        return pid is not None and self._is_ours(pid)

    def start(self, timeout: float = 120.0, wait: bool = True) -> None:
        """Start the broker (no-op if it already runs from this data dir) and wait until it serves requests.

        ``timeout`` bounds the wait for the JVM to become ready, not the one-off jar download.
        The JVM runs in its own session, so it outlives the calling process; use :meth:`stop` to end it.
        ``wait=False`` returns once the JVM is launched (a quorum's nodes start together, then
        :meth:`wait_ready`).
        """
        if self.is_running():
            self._say(f"Kafka is already running on {self.bootstrap_servers} (pid {self._read_pid()})")
            return
        started = time.monotonic()
        self._check_ports_free()  # fail fast, before any download or mkdir
        jars = self.ensure_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The data-dir lock stops two `start`s on the same dir from formatting or launching twice.
        with _file_lock(
            self.data_dir / ".lock", on_wait=lambda: self._say("waiting for another process starting Kafka…")
        ):
            if self.is_running():
                self._say(f"Kafka is already running on {self.bootstrap_servers} (pid {self._read_pid()})")
                return
            java = java_executable()
            if shutil.which(java) is None:
                raise EmbeddedKafkaError(
                    f"Java not found ({java}). Kafka {self.version} needs Java 17 or newer: "
                    "install a JDK or set JAVA_HOME."
                )
            self._check_ports_free()
            self.pid_file.unlink(missing_ok=True)
            props = server_properties(
                port=self.port,
                controller_port=self.controller_port,
                log_dirs=self.log_dirs,
                node_id=self.quorum.node_id if self.quorum else 1,
                quorum=self.quorum,
            )
            if self.security is not None:
                props = secured_properties(props, self.port, self.security)
            self.properties_file.write_text(render_properties(props))
            self.properties_file.chmod(0o600)  # it may hold the broker's keystore and SASL passwords
            classpath = os.pathsep.join(str(jar) for jar in jars)
            if not (self.log_dirs / "meta.properties").exists():
                self._format(java, classpath)
            proc = self._launch(java, classpath)
            if not wait:
                return
            try:
                self._wait_until_ready(proc, deadline=time.monotonic() + timeout, timeout=timeout)
            except BaseException:  # failed or interrupted: don't leave a half-started JVM behind
                self.stop()
                raise
        self._say(f"Kafka ready in {time.monotonic() - started:.1f} s on {self.bootstrap_servers}")

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait for a broker started with ``wait=False``; stops it if it does not become ready."""
        if self._proc is None:
            raise EmbeddedKafkaError(f"Kafka on {self.bootstrap_servers} was not started by this process")
        try:
            self._wait_until_ready(self._proc, deadline=time.monotonic() + timeout, timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would (no controlled shutdown)."""
        pid = self._read_pid()
        if pid is None or not self._is_ours(pid):
            return
        self._signal(pid, signal.SIGKILL)
        self._wait_exit(pid, 10.0)
        self.pid_file.unlink(missing_ok=True)
        self._proc = None

    def _check_ports_free(self) -> None:
        for port in (self.port, self.controller_port):
            if _port_open(port):
                raise EmbeddedKafkaError(
                    f"port {port} on {_HOST} is already in use (another Kafka?); "
                    "choose other ports or stop whatever listens there."
                )

    def _jvm_base(self, java: str, classpath: str, heap: str) -> list[str]:
        return [
            java,
            f"-Xmx{heap}",
            *_JVM_OPTS,
            f"-Dlog4j2.configurationFile={JVM_DIR / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            classpath,
        ]

    def _format(self, java: str, classpath: str) -> None:
        self._say("formatting KRaft storage…")
        cmd = [
            *self._jvm_base(java, classpath, heap="256m"),
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            self.quorum.cluster_id if self.quorum else new_cluster_id(),
            "--config",
            str(self.properties_file),
            # One node: no static controller.quorum.voters, this node is the sole initial voter (KIP-853).
            # A quorum's nodes name their voters in their properties.
            *([] if self.quorum else ["--standalone"]),
            *(self.security.format_args() if self.security is not None else []),
        ]
        result = subprocess.run(cmd, cwd=self.data_dir, capture_output=True, text=True, timeout=180)
        if result.returncode != 0:
            raise EmbeddedKafkaError(
                f"formatting KRaft storage in {self.log_dirs} failed (exit code {result.returncode}):\n"
                f"{(result.stdout + result.stderr).strip()}"
            )

    def _launch(self, java: str, classpath: str) -> subprocess.Popen[bytes]:
        self._say(f"starting Kafka {self.version} (heap {self.heap})…")
        # As kafka-run-class.sh's default, but the pauses alone (the `gc` tag) and two small files at most.
        gc_log = f"-Xlog:gc:file={self.gc_log_file}:time,uptime:filecount=2,filesize=10M"
        cmd = [
            *self._jvm_base(java, classpath, heap=self.heap),
            gc_log,
            "kafka.Kafka",
            str(self.properties_file),
        ]
        with self.out_file.open("wb") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Own session: Ctrl-C in the terminal and the CLI exiting must not take the broker down.
                start_new_session=True,
                close_fds=True,
            )
        self._proc = proc
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(f"{proc.pid}\n")
        os.replace(tmp, self.pid_file)  # atomic: readers never see an empty pid file
        return proc

    def _wait_until_ready(self, proc: subprocess.Popen[bytes], *, deadline: float, timeout: float) -> None:
        self._say(f"waiting for Kafka on {self.bootstrap_servers}…")
        while True:
            rc = proc.poll()
            if rc is not None:
                raise EmbeddedKafkaError(
                    f"Kafka exited with code {rc} while starting.\n{self._diagnostics()}"
                )
            # Cheap TCP check first; the metadata request proves the broker really serves clients.
            if _port_open(self.port) and probe(
                self.bootstrap_servers, 5.0, self.security.client if self.security else None
            ):
                return
            if time.monotonic() >= deadline:
                raise EmbeddedKafkaError(
                    f"Kafka did not become ready on {self.bootstrap_servers} within {timeout:.0f} s.\n"
                    f"{self._diagnostics()}"
                )
            time.sleep(0.25)

    def _diagnostics(self) -> str:
        parts = []
        for path in (self.out_file, self.log_file):
            if text := tail(path).strip():
                parts.append(f"--- last lines of {path} ---\n{text}")
        return "\n".join(parts) or f"(no output in {self.out_file} or {self.log_file})"

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the broker: SIGTERM (controlled shutdown), then SIGKILL after ``timeout``. No-op if not running."""
        pid = self._read_pid()
        if pid is None or not self._is_ours(pid):
            self.pid_file.unlink(missing_ok=True)  # stale
            self._proc = None
            return
        self._say(f"stopping Kafka (pid {pid})…")
        self._signal(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout):
            self._say(f"Kafka did not stop within {timeout:.0f} s; killing it")
            self._signal(pid, signal.SIGKILL)
            if not self._wait_exit(pid, 10.0):
                raise EmbeddedKafkaError(f"could not kill Kafka (pid {pid})")
        self.pid_file.unlink(missing_ok=True)
        self._proc = None
        self._say("Kafka stopped")

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            # The JVM leads its own process group (start_new_session): signal the group, in case it forked.
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                if self._proc.poll() is not None:
                    return True
            else:
                # If we are the parent (started by another EmbeddedKafka in this process), reap the zombie.
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                if not _pid_alive(pid):
                    return True
            time.sleep(0.1)
        return False

    def status(self) -> dict[str, Any]:
        """A JSON-friendly summary for ``kev kafka status``."""
        pid = self._read_pid()
        running = pid is not None and self._is_ours(pid)
        return {
            "running": running,
            "pid": pid if running else None,
            "bootstrap_servers": self.bootstrap_servers,
            "controller_port": self.controller_port,
            "version": self.version,
            "data_dir": str(self.data_dir),
            "log_file": str(self.log_file),
            "jars_cached": self.jars_cached(),
            "cache_dir": str(self.dist_dir),
        }


class EmbeddedKafkaCluster:
    """Several :class:`EmbeddedKafka` nodes forming one KRaft cluster (``kev kafka start --nodes 3``).

    Every node is broker and controller; topics get replication factor 3 (at most the node count) and
    ``min.insync.replicas`` one less, so with acks=all one node may die without losing an acknowledged record.
    Node ``i`` (from 1) listens on ``port + 2(i-1)`` and its controller on the port after it; its state is in
    ``<data_dir>/node-<i>``.
    """

    def __init__(
        self,
        *,
        nodes: int = 3,
        port: int = 9092,
        data_dir: Path | None = None,
        cache_dir: Path | None = None,
        heap: str = DEFAULT_HEAP,
        progress: Progress | None = None,
        ports: list[tuple[int, int]] | None = None,
    ) -> None:
        if nodes < 2:
            raise ValueError("a cluster has at least 2 nodes (use EmbeddedKafka for one)")
        ports = ports or [(port + 2 * i, port + 2 * i + 1) for i in range(nodes)]
        if len(ports) != nodes:
            raise ValueError(f"{nodes} nodes need {nodes} (port, controller port) pairs")
        root = Path(data_dir or Path(cache_dir or default_cache_dir()) / "kafka" / f"cluster-{ports[0][0]}")
        self.data_dir = root.expanduser().absolute()
        voters = tuple((i + 1, controller) for i, (_, controller) in enumerate(ports))
        cluster_id = _stored_cluster_id(self.data_dir) or new_cluster_id()
        self.nodes = [
            EmbeddedKafka(
                port=client,
                controller_port=controller,
                data_dir=self.data_dir / f"node-{i + 1}",
                cache_dir=cache_dir,
                heap=heap,
                progress=_prefixed(progress, f"node {i + 1}: "),
                quorum=Quorum(cluster_id, i + 1, voters),
            )
            for i, (client, controller) in enumerate(ports)
        ]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    @property
    def replication_factor(self) -> int:
        quorum = self.nodes[0].quorum
        assert quorum is not None
        return quorum.replication_factor

    def start(self, timeout: float = 180.0) -> None:
        """Launch every node, then wait for each: a node serves clients only once a quorum of voters runs."""
        try:
            for node in self.nodes:
                node.start(timeout, wait=False)
            for node in self.nodes:
                if node._proc is not None:  # launched here, not found already running
                    node.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def is_running(self) -> bool:
        return any(node.is_running() for node in self.nodes)

    def stop(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.stop(timeout)


def _prefixed(progress: Progress | None, prefix: str) -> Progress | None:
    if progress is None:
        return None
    return lambda message: progress(prefix + message)


def _stored_cluster_id(root: Path) -> str | None:
    """The cluster id a node of a cluster in ``root`` was formatted with, so a restart keeps it."""
    for meta in sorted(root.glob(f"node-*/{_LOG_DIRS}/meta.properties")):
        for line in meta.read_text().splitlines():
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
    return None


if __name__ == "__main__":  # pragma: no cover - handy for debugging: python -m kev.kafka.embedded
    kafka = EmbeddedKafka(progress=lambda msg: print(msg, file=sys.stderr))
    kafka.start()
    print(kafka.status())
