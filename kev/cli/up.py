"""``kev up`` and ``kev up --demo``: the whole stack on one machine, with the quickstart applied.

``--kubernetes`` runs the same data plane with the controller in Kubernetes mode against a cluster (any
kubeconfig, e.g. ``kev cluster up``'s): Knative's CRDs are applied if missing, and the quickstart goes to the
cluster instead of the local store.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from rich.console import Console

from kev.kafka.embedded import EmbeddedKafka
from kev.readiness import wait_ready
from kev.stack import ALL_SERVICES, Service, Stack, kev_command
from keventing.resources import ResourceKey, parse_resource
from keventing.settings import CommonSettings
from keventing.store import ResourceStore

console = Console()
DISPLAY_PORT = 8081
CONSOLE_PORT = 8093
DEMO_HEADERS = {
    "Ce-Id": "say-hello",
    "Ce-Specversion": "1.0",
    "Ce-Type": "com.icloud2native.sayhievent",
    "Ce-Time": "2023-12-01T11:35:56.7181741Z",
    "Ce-Source": "sendoff",
    "Content-Type": "application/json",
}
DEMO_BODY = '{"msg":"Hello littlyboy Knative!"}'


def curl_command(url: str) -> str:
    """The demo event as a curl command: one argument per line, each line but the last ending in `` \\``,
    so that it pastes whole into a shell however narrow the terminal that showed it."""
    parts = [f'curl -v "{url}" -X POST', *(f'-H "{k}: {v}"' for k, v in DEMO_HEADERS.items())]
    parts.append(f"-d '{DEMO_BODY}'")
    return " \\\n    ".join(parts)


def run_up(examples: Path, demo: bool, kubeconfig: str | None = None, kubernetes: bool = False) -> int:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    kafka: EmbeddedKafka | None = None
    started_kafka = False
    log_dir = Path(os.environ.get("KEVENTING_LOG_DIR", ".kev/logs")).absolute()
    if external:
        console.print(f"using Kafka at {external} (KAFKA_BOOTSTRAP_SERVERS)")
        bootstrap = external
    else:
        kafka = EmbeddedKafka(progress=lambda message: console.print(f"[dim]kafka:[/dim] {message}"))
        started_kafka = not kafka.is_running()
        kafka.start()
        bootstrap = kafka.bootstrap_servers
    settings = CommonSettings(KAFKA_BOOTSTRAP_SERVERS=bootstrap)  # type: ignore[call-arg]
    extra_env = {}
    if kubernetes:
        extra_env["KEVENTING_KUBERNETES"] = "true"
        if kubeconfig:
            extra_env["KUBECONFIG"] = str(Path(kubeconfig).absolute())
    stack = Stack(bootstrap, log_dir, instance=settings.instance, extra_env=extra_env)
    display_log = log_dir / "event-display.log"
    busy = [
        p
        for p in (
            stack.receiver_port,
            stack.dispatcher_port,
            stack.controller_port,
            stack.sources_port,
            DISPLAY_PORT,
            CONSOLE_PORT,
        )
        if _in_use(p)
    ]
    if busy:
        console.print(
            f"[red]error:[/red] port(s) {', '.join(map(str, busy))} already in use: is keventing already up?"
        )
        if kafka is not None and started_kafka:
            kafka.stop()
        return 1
    try:
        if kubernetes:
            from kev.cluster.apply import apply_crds

            console.print("applying Knative's CRDs to the cluster…")
            asyncio.run(apply_crds(kubeconfig))
        stack.start_all(ALL_SERVICES)
        # The console reads the same store (or, with --kubernetes, the same cluster): the stack's environment.
        stack.start(
            Service(
                "console",
                [*kev_command(), "console", "--port", str(CONSOLE_PORT)],
                f"http://127.0.0.1:{CONSOLE_PORT}/readyz",
            )
        )
        display = Service(
            "event-display",
            [*kev_command(), "event-display", "--port", str(DISPLAY_PORT)],
            f"http://127.0.0.1:{DISPLAY_PORT}/healthz",
        )
        if demo:
            display_log.parent.mkdir(parents=True, exist_ok=True)
            display_log.write_bytes(b"")
            stack.start(display)
        else:
            display.process = subprocess.Popen(display.argv, env=stack.env())  # prints to this terminal
            stack.services[display.name] = display
        console.print("starting controller, receiver, dispatcher, sources, console and event-display…")
        stack.wait_ready(timeout=90)
        if kubernetes:
            from kev.cluster.apply import apply_documents, wait_ready_in_cluster

            keys = asyncio.run(apply_documents(kubeconfig, _documents(examples)))
        else:
            keys = asyncio.run(_apply_dir(settings, examples))
        for key in keys:
            console.print(f"applied {key}")
        for key in keys:
            if key.kind in ("Broker", "Trigger"):
                if kubernetes:
                    asyncio.run(wait_ready_in_cluster(kubeconfig, key, timeout=60))
                else:
                    asyncio.run(wait_ready(settings, key, timeout=60))
        url = f"{stack.ingress_url}/default/default"
        console.print(f"\n[bold green]keventing is up.[/bold green] Broker URL: [bold]{url}[/bold]")
        console.print(f"Console: [bold]http://localhost:{CONSOLE_PORT}[/bold]")
        console.print(f"logs: {log_dir}\n\nSend an event:")
        # No markup, no highlighting, no wrapping of ours: a narrow terminal soft-wraps the lines it shows,
        # and a paste still gets them whole.
        console.print(f"  {curl_command(url)}\n", markup=False, highlight=False, soft_wrap=True)
        if demo:
            return _demo(url, display_log)
        console.print("event-display prints what it receives below. Ctrl-C stops everything.\n")
        _wait_for_interrupt(stack)
        return 0
    except (TimeoutError, RuntimeError) as err:
        console.print(f"[red]error:[/red] {err}")
        return 1
    finally:
        console.print("stopping…")
        stack.stop_all()
        if kafka is not None and started_kafka:
            kafka.stop()


def _documents(directory: Path) -> list[dict]:
    import yaml

    return [
        document
        for path in sorted(directory.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


async def _apply_dir(settings: CommonSettings, directory: Path) -> list[ResourceKey]:
    store = ResourceStore(settings)
    await store.ensure()
    try:
        applied = await store.apply_all([parse_resource(document) for document in _documents(directory)])
        keys = [resource.key for resource, _ in applied]
    finally:
        await store.close()
    return keys


def _in_use(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_interrupt(stack: Stack) -> None:
    interrupted = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal interrupted
        interrupted = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not interrupted:
        for service in stack.services.values():
            if service.process is not None and service.process.poll() is not None:
                console.print(
                    f"[red]{service.name} exited ({service.process.returncode}); see {service.log_path}[/red]"
                )
                return
        time.sleep(0.2)


def _demo(url: str, display_log: Path) -> int:
    if shutil.which("curl"):
        argv = ["curl", "-sS", "-v", url, "-X", "POST"]
        for name, value in DEMO_HEADERS.items():
            argv += ["-H", f"{name}: {value}"]
        argv += ["-d", DEMO_BODY]
        result = subprocess.run(argv, capture_output=True, text=True)
        console.print(result.stderr.rstrip(), markup=False, highlight=False)
    else:
        import urllib.request

        request = urllib.request.Request(url, DEMO_BODY.encode(), DEMO_HEADERS, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            console.print(f"< HTTP {response.status}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = display_log.read_text(errors="replace")
        if "id: say-hello" in text:
            start = text.rfind("☁️  cloudevents.Event", 0, text.index("id: say-hello"))
            block = text[start:]
            console.print("\n[bold]event-display printed:[/bold]")
            print(block, flush=True)
            return 0
        time.sleep(0.2)
    console.print("[red]error:[/red] event-display did not receive the event within 60 seconds")
    return 1
