"""``kev kafka start|stop|status``: manage the embedded single-node Kafka used for local development.

If ``KAFKA_BOOTSTRAP_SERVERS`` is set, keventing talks to that external cluster instead, so ``start`` does
nothing and ``status`` says so.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kev.kafka.embedded import DEFAULT_HEAP, EmbeddedKafka, EmbeddedKafkaCluster, EmbeddedKafkaError

app = typer.Typer(
    name="kafka",
    help="Run a local single-node Apache Kafka 4.x (KRaft) for development.",
    no_args_is_help=True,
)

console = Console()
err_console = Console(stderr=True)

EXTERNAL_ENV = "KAFKA_BOOTSTRAP_SERVERS"

PortOption = Annotated[int, typer.Option("--port", "-p", help="Client (PLAINTEXT) port on 127.0.0.1.")]
ControllerPortOption = Annotated[
    int | None, typer.Option("--controller-port", help="KRaft controller port [default: port + 1].")
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Broker state (logs, pid, kafka.log) [default: <cache>/kafka/data-<port>].",
        file_okay=False,
    ),
]


def _external() -> str | None:
    return os.environ.get(EXTERNAL_ENV) or None


NodesOption = Annotated[
    int,
    typer.Option(
        "--nodes",
        min=1,
        max=9,
        help="Nodes of one KRaft cluster (3: replication factor 3, min.insync.replicas 2); node i listens "
        "on port + 2(i-1).",
    ),
]


T = TypeVar("T")


def _starting(what: str, start: Callable[[Callable[[str], None]], T]) -> T:
    """``start(progress)`` under a spinner; a bad option, a failed start or Ctrl-C is a clear error."""
    with console.status(f"starting {what}…") as spinner:

        def progress(message: str) -> None:
            # The spinner shows the current step; the printed lines leave a record of what happened.
            spinner.update(Text(message))
            console.print(Text("• ", style="dim") + Text(message, style="dim"))

        try:
            return start(progress)
        except (ValueError, EmbeddedKafkaError) as exc:  # bad option values, or Kafka itself
            raise _fail(str(exc)) from exc
        except KeyboardInterrupt as exc:
            raise _fail("interrupted; nothing was left running") from exc


def _stop_args(port: int, data_dir: Path | None) -> str:
    return ("" if port == 9092 else f" --port {port}") + (f" --data-dir {data_dir}" if data_dir else "")


def _start_cluster(nodes: int, port: int, data_dir: Path | None, heap: str, timeout: float) -> None:
    started = time.monotonic()

    def start(progress: Callable[[str], None]) -> EmbeddedKafkaCluster:
        cluster = EmbeddedKafkaCluster(
            nodes=nodes, port=port, data_dir=data_dir, heap=heap, progress=progress
        )
        cluster.start(timeout=timeout)
        return cluster

    cluster = _starting(f"{nodes} Kafka nodes", start)
    rf = cluster.replication_factor
    console.print(
        Text.assemble(
            ("Kafka is running", "bold green"),
            f": {nodes} nodes on {cluster.bootstrap_servers} ({time.monotonic() - started:.1f} s)",
        )
    )
    console.print(
        Text(
            f"  keventing's topics on it: KEVENTING_CONTROL_PLANE_REPLICATION_FACTOR={rf} "
            f"KEVENTING_DEFAULT_TOPIC_REPLICATION_FACTOR={rf}",
            style="dim",
        ),
        soft_wrap=True,
    )
    console.print(
        Text(f"  stop it with: kev kafka stop --nodes {nodes}{_stop_args(port, data_dir)}", style="dim")
    )


def _fail(message: str) -> typer.Exit:
    # Text(), not markup: Kafka log lines start with "[timestamp]", which rich would parse as tags.
    err_console.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)
    return typer.Exit(code=1)


@app.command()
def start(
    port: PortOption = 9092,
    controller_port: ControllerPortOption = None,
    data_dir: DataDirOption = None,
    heap: Annotated[str, typer.Option(help="JVM max heap (-Xmx), e.g. 512m or 1g.")] = DEFAULT_HEAP,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker to become ready.")] = 120.0,
    nodes: NodesOption = 1,
) -> None:
    """Start Kafka in the background (downloads it with Maven on first use) and wait until it is ready."""
    if external := _external():
        console.print(
            f"External Kafka configured ({EXTERNAL_ENV}={external}); not starting the embedded broker.",
            markup=False,
        )
        return
    if nodes > 1:
        _start_cluster(nodes, port, data_dir, heap, timeout)
        return
    started = time.monotonic()

    def start_one(progress: Callable[[str], None]) -> EmbeddedKafka:
        kafka = EmbeddedKafka(
            port=port, controller_port=controller_port, data_dir=data_dir, heap=heap, progress=progress
        )
        kafka.start(timeout=timeout)
        return kafka

    kafka = _starting("Kafka", start_one)
    info = kafka.status()
    console.print(
        Text.assemble(
            ("Kafka is running", "bold green"),
            f" on {info['bootstrap_servers']} (pid {info['pid']}, {time.monotonic() - started:.1f} s)",
        )
    )
    console.print(Text(f"  log: {info['log_file']}", style="dim"))
    console.print(Text(f"  stop it with: kev kafka stop{_stop_args(port, data_dir)}", style="dim"))


@app.command()
def stop(
    port: PortOption = 9092,
    data_dir: DataDirOption = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for a clean shutdown before SIGKILL.")
    ] = 30.0,
    nodes: NodesOption = 1,
) -> None:
    """Stop the embedded Kafka started with `kev kafka start`."""
    if nodes > 1:
        cluster = EmbeddedKafkaCluster(nodes=nodes, port=port, data_dir=data_dir)
        with console.status(f"stopping the {nodes} Kafka nodes…"):
            try:
                cluster.stop(timeout=timeout)
            except EmbeddedKafkaError as exc:
                raise _fail(str(exc)) from exc
        console.print(Text.assemble(("Kafka stopped", "bold"), f" ({nodes} nodes)."))
        return
    kafka = EmbeddedKafka(port=port, data_dir=data_dir)
    if not kafka.is_running():
        note = (
            f" ({EXTERNAL_ENV} points to an external cluster, which is not managed here)"
            if _external()
            else ""
        )
        console.print(f"Embedded Kafka is not running (data dir {kafka.data_dir}).{note}", markup=False)
        return
    pid = kafka.status()["pid"]
    with console.status(f"stopping Kafka (pid {pid})…"):
        try:
            kafka.stop(timeout=timeout)
        except EmbeddedKafkaError as exc:
            raise _fail(str(exc)) from exc
    console.print(Text.assemble(("Kafka stopped", "bold"), f" (pid {pid})."))


@app.command()
def status(
    port: PortOption = 9092,
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show whether the embedded Kafka is running, where, and which Kafka version it uses."""
    info: dict[str, Any] = EmbeddedKafka(port=port, data_dir=data_dir).status()
    info["external_bootstrap_servers"] = _external()
    if as_json:
        print(json.dumps(info, indent=2))
        return
    if info["external_bootstrap_servers"]:
        console.print(
            Text.assemble(
                ("External Kafka configured: ", "bold"),
                f"{EXTERNAL_ENV}={info['external_bootstrap_servers']} (keventing uses it, not the embedded one)",
            )
        )
    table = Table(title="Embedded Kafka", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    state = Text("running", style="bold green") if info["running"] else Text("stopped", style="yellow")
    table.add_row("state", state)
    table.add_row("pid", str(info["pid"] or "-"))
    table.add_row("bootstrap servers", info["bootstrap_servers"])
    table.add_row("Kafka version", info["version"] + ("" if info["jars_cached"] else " (not downloaded yet)"))
    table.add_row("data dir", info["data_dir"])
    table.add_row("log file", info["log_file"])
    console.print(table)
