"""Run keventing's services as separate processes on one machine: ``kev up``, ``make demo`` and the tests.

Each service is its own OS process (as in production), started with the environment that points it at
Kafka and at the others; output goes to one log file per service. Unless the environment names a contract
key, every service gets the stack's own: a random one, created once beside the log directory
(``<log dir>/../contract.key``), so that a restarted stack still verifies what its controller signed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from keventing.contractauth import new_key

_KEY_VARIABLES = ("KEVENTING_CONTRACT_KEY", "KEVENTING_CONTRACT_KEY_FILE")


@dataclass
class Service:
    name: str
    argv: list[str]
    health_url: str | None
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None


def kev_command() -> list[str]:
    """How to run ``kev`` with the interpreter we run under (works without the venv on PATH)."""
    return [sys.executable, "-m", "kev.cli.main"]


# Every service; ``start_all`` starts the first three unless told otherwise (the source adapters are opt-in).
ALL_SERVICES = ("controller", "receiver", "dispatcher", "sources")


@dataclass
class Stack:
    bootstrap_servers: str
    log_dir: Path
    instance: str = "keventing"
    receiver_port: int = 8080
    dispatcher_port: int = 8090
    controller_port: int = 8091
    sources_port: int = 8092
    extra_env: dict[str, str] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)

    @classmethod
    def on_free_ports(
        cls,
        bootstrap_servers: str,
        log_dir: Path,
        instance_prefix: str,
        extra_env: Mapping[str, str] | None = None,
    ) -> Stack:
        """A stack of its own beside others on this machine: every service on a free port, and an instance
        name (``<prefix>-<random>``) so that its control-plane topics are its own."""
        from kev.kafka.embedded import free_port

        return cls(
            bootstrap_servers=bootstrap_servers,
            log_dir=log_dir,
            instance=f"{instance_prefix}-{uuid.uuid4().hex[:8]}",
            receiver_port=free_port(),
            dispatcher_port=free_port(),
            controller_port=free_port(),
            sources_port=free_port(),
            extra_env=dict(extra_env or {}),
        )

    @property
    def ingress_url(self) -> str:
        return f"http://localhost:{self.receiver_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
                "KEVENTING_INSTANCE": self.instance,
                "KEVENTING_INGRESS_URL": self.ingress_url,
                "KEVENTING_RECEIVER_PORT": str(self.receiver_port),
                "KEVENTING_DISPATCHER_PORT": str(self.dispatcher_port),
                "KEVENTING_CONTROLLER_PORT": str(self.controller_port),
                "KEVENTING_SOURCES_PORT": str(self.sources_port),
                "KEVENTING_HTTP_HOST": "127.0.0.1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        if not any(env.get(variable) for variable in _KEY_VARIABLES):
            env["KEVENTING_CONTRACT_KEY_FILE"] = str(ensure_key_file(self.log_dir.parent / "contract.key"))
        return env

    @property
    def ports(self) -> dict[str, int]:
        """Each service's HTTP port (its /metrics, /readyz, /healthz; the receiver's ingress too)."""
        return {
            "receiver": self.receiver_port,
            "dispatcher": self.dispatcher_port,
            "controller": self.controller_port,
            "sources": self.sources_port,
        }

    def service(self, name: str, port: int | None = None, **env: str) -> Service:
        """The definition of one of keventing's services (not started)."""
        port = port or self.ports[name]
        extra = dict(env)
        extra.setdefault(f"KEVENTING_{name.upper()}_PORT", str(port))
        return Service(name, [*kev_command(), name], f"http://127.0.0.1:{port}/readyz", extra)

    def start(self, service: Service) -> Service:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        service.log_path = self.log_dir / f"{service.name}.log"
        log = service.log_path.open("ab")
        service.process = subprocess.Popen(
            service.argv,
            env={**self.env(), **service.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.services[service.name] = service
        return service

    def start_all(self, names: tuple[str, ...] = ("controller", "receiver", "dispatcher")) -> None:
        for name in names:
            self.start(self.service(name))

    def wait_ready(self, timeout: float = 60.0, names: list[str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for service in [self.services[n] for n in (names or list(self.services))]:
            if service.health_url is None:
                continue
            while True:
                if service.process is not None and service.process.poll() is not None:
                    raise RuntimeError(
                        f"{service.name} exited with {service.process.returncode}; see {service.log_path}"
                    )
                if _get_ok(service.health_url):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{service.name} not ready after {timeout:.0f} s; see {service.log_path}"
                    )
                time.sleep(0.1)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        service = self.services.get(name)
        if service is None or service.process is None:
            return
        process = service.process
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill(self, name: str) -> None:
        self.stop(name, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in reversed(list(self.services)):
            self.stop(name)


def ensure_key_file(path: Path) -> Path:
    """``path``, holding a new random contract key unless it holds one already (readable by its owner only).
    Created exclusively: stacks starting side by side agree on one key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(new_key() + "\n")
    return path


def _get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False
