"""Fixtures for the container end-to-end tests (`make e2e`, root only): a podman API socket that
docker-compose talks to, and the compose project itself.

deploy/e2e/setup.sh builds the images first; these fixtures only run them. Every wait is bounded and the
compose project is torn down (``down``) however the tests end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from kev.kafka.embedded import default_cache_dir, kafka_version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "keventing-e2e"
IMAGE = os.environ.get("KEVENTING_IMAGE", "localhost/keventing:e2e")
KAFKA_IMAGE = os.environ.get("KEVENTING_KAFKA_IMAGE", "localhost/keventing-kafka")
CONTAINERS_CONF = default_cache_dir() / "e2e" / "containers.conf"
T = TypeVar("T")


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def wait_for(predicate: Callable[[], T], timeout: float, what: str, every: float = 0.5) -> T:
    """Poll ``predicate`` until it returns something truthy (and return that), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """The images deploy/e2e/setup.sh built; a clear failure if it did not run."""
    if os.geteuid() != 0:
        pytest.fail("the e2e tests need root (podman); run `make e2e` as root")
    for tool in ("podman", "docker-compose"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: run `make e2e` (deploy/e2e/setup.sh installs it)")
    found = {"keventing": IMAGE, "kafka": f"{KAFKA_IMAGE}:{kafka_version()}"}
    for name in found.values():
        if podman("image", "exists", name, check=False).returncode != 0:
            pytest.fail(f"image {name} does not exist: run `make e2e` (deploy/e2e/setup.sh builds it)")
    return found


@pytest.fixture(scope="session")
def podman_socket(tmp_path_factory: pytest.TempPathFactory, images: dict[str, str]) -> Iterator[Path]:
    """`podman system service` on a socket of its own: the Docker API docker-compose needs."""
    socket = tmp_path_factory.mktemp("podman") / "podman.sock"
    log = socket.with_name("service.log").open("wb")
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket}"],
        env=podman_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def answers() -> bool:
        if service.poll() is not None:
            raise AssertionError(
                f"podman system service exited:\n{socket.with_name('service.log').read_text()}"
            )
        try:
            transport = httpx.HTTPTransport(uds=str(socket))
            with httpx.Client(transport=transport, timeout=2) as client:
                return client.get("http://d/_ping").text == "OK"
        except httpx.HTTPError:
            return False

    try:
        wait_for(answers, 30, f"the podman API on {socket}")
        yield socket
    finally:
        service.terminate()
        try:
            service.wait(timeout=15)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(timeout=5)
        log.close()


@dataclass
class Compose:
    """`docker-compose -p keventing-e2e` against the podman socket, with the locally built images."""

    socket: Path
    images: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)
    health_log: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {
            **podman_env(),
            "DOCKER_HOST": f"unix://{self.socket}",
            "COMPOSE_PROJECT_NAME": PROJECT,
            "KEVENTING_IMAGE": self.images["keventing"],
            "KEVENTING_KAFKA_IMAGE": KAFKA_IMAGE,
            "KEVENTING_KAFKA_VERSION": kafka_version(),
            # `exec` and `run` through the API, never by shelling out to a `docker` CLI.
            "COMPOSE_INTERACTIVE_NO_CLI": "1",
        }

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "--profile", "quickstart", *args]
        started = time.monotonic()
        try:
            result = subprocess.run(
                command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"`docker-compose {' '.join(args)}` took over {timeout:.0f} s") from exc
        self.timings[" ".join(args)] = time.monotonic() - started
        if check and result.returncode != 0:
            raise AssertionError(
                f"`docker-compose {' '.join(args)}` failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result

    def containers(self, *, all: bool = True) -> list[dict[str, Any]]:
        """The project's containers (podman's view, not compose's): Names, State, Status."""
        args = ["ps", "--format", "json", "--filter", f"label=com.docker.compose.project={PROJECT}"]
        out = podman(*args, *(["--all"] if all else [])).stdout
        return json.loads(out or "[]")  # type: ignore[no-any-return]

    def logs(self, service: str) -> str:
        return self("logs", "--no-color", service, timeout=60).stdout


class HealthChecks:
    """Runs the containers' healthchecks: podman schedules them with systemd timers, and there is no
    systemd here, so without this every container would stay "starting" and `depends_on: service_healthy`
    would wait forever. Only containers not yet healthy are probed (compose waits on them at start-up)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.log: list[str] = []  # when each probe ran and what it answered
        self._thread = threading.Thread(target=self._run, name="healthchecks", daemon=True)

    def __enter__(self) -> HealthChecks:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(5.0):  # the compose files interval
            try:
                out = podman(
                    "ps",
                    "--format",
                    "{{.ID}} {{.Status}}",
                    "--filter",
                    f"label=com.docker.compose.project={PROJECT}",
                ).stdout
                for line in out.splitlines():
                    container, _, status = line.partition(" ")
                    if "(starting)" in status or "(unhealthy)" in status:
                        result = podman("healthcheck", "run", container, timeout=30, check=False)
                        self.log.append(
                            f"{time.strftime('%H:%M:%S')} {container[:12]} {result.stdout.strip()}"
                        )
            except (AssertionError, subprocess.TimeoutExpired):
                continue


@pytest.fixture(scope="module")
def compose(podman_socket: Path, images: dict[str, str]) -> Iterator[Compose]:
    """The compose project, cleared of leftovers first and brought down (volumes too) at the end."""
    project = Compose(podman_socket, images)
    project("down", "--volumes", "--remove-orphans", "--timeout", "5", timeout=120)
    with HealthChecks() as health:
        project.health_log = health.log
        try:
            yield project
        finally:
            project("down", "--volumes", "--remove-orphans", "--timeout", "10", timeout=180, check=False)
            for container in project.containers():
                podman("rm", "--force", "--time", "5", container["Id"], check=False)
