"""``kev``: the keventing CLI — resources (apply, get, describe, delete), events, and every service."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kev.cli.kafka import app as kafka_app
from kev.client import ClientError, ClientSettings, ResourceClient, open_client
from kev.cluster.cli import app as cluster_app
from keventing.resources import (
    EventType,
    Resource,
    ResourceInvalid,
    ResourceKey,
    SinkBinding,
    UnknownKind,
    kind_for,
    parse_resource,
)

app = typer.Typer(
    help="keventing: Knative Eventing on Apache Kafka.", no_args_is_help=True, add_completion=False
)
event_app = typer.Typer(help="Send and display CloudEvents.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka", help="Start, stop and inspect the embedded Apache Kafka.")
app.add_typer(cluster_app, name="cluster", help="A local Kubernetes control plane: build, up, down, kubectl.")
app.add_typer(event_app, name="event")
console = Console()
T = TypeVar("T")
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    # Escaped: a message naming a field like annotations[kafka.eventing.knative.dev/x] is not rich markup.
    err_console.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


# Where the resource commands read and write; `kev --kubeconfig PATH` (or --context) points them at a cluster.
settings = ClientSettings()


@app.callback()
def target(
    kubeconfig: str | None = typer.Option(
        None, "--kubeconfig", help="Work against this cluster instead of the local store."
    ),
    context: str | None = typer.Option(None, "--context", help="The kubeconfig context (implies a cluster)."),
) -> None:
    """keventing: Knative Eventing on Apache Kafka."""
    if kubeconfig or context:
        settings.kubernetes = True
        settings.kubeconfig = kubeconfig or settings.kubeconfig
        settings.kube_context = context or settings.kube_context


def _client_call(fn: Callable[[ResourceClient], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_client(settings) as client:
            return await fn(client)

    try:
        return asyncio.run(run())
    except ClientError as err:
        raise fail(str(err)) from None


# ------------------------------------------------------------------------------------------ resources


def _utf8(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise fail(f"{name}: not UTF-8 text (byte {err.start}): save the file as UTF-8") from None


def read_documents(paths: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every YAML document of every file ("-" is standard input; directories are read in name order)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        if path == "-":
            sources = [("<stdin>", _utf8("<stdin>", sys.stdin.buffer.read()))]
        else:
            p = Path(path)
            if p.is_dir():
                files = sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml", ".json"))
            elif p.exists():
                files = [p]
            else:
                raise fail(f"{path}: no such file or directory")
            sources = [(str(f), _utf8(str(f), f.read_bytes())) for f in files]
        for name, text in sources:
            try:
                documents = [d for d in yaml.safe_load_all(text) if d is not None]
            except yaml.YAMLError as err:
                raise fail(f"{name}: invalid YAML: {err}") from None
            except RecursionError:
                raise fail(f"{name}: the YAML is nested too deeply to read") from None
            for document in documents:
                if isinstance(document, dict) and document.get("kind") == "List":
                    out.extend((name, item) for item in document.get("items", []))
                else:
                    out.append((name, document))
    return out


def _parse_all(filename: list[str], namespace: str | None) -> list[Resource]:
    """Every resource of the files, or exit 1 having printed every invalid one and why."""
    resources: list[Resource] = []
    errors = []
    for source, document in read_documents(filename):
        if namespace and isinstance(document, dict):
            document.setdefault("metadata", {}).setdefault("namespace", namespace)
        try:
            resources.append(parse_resource(document))
        except ResourceInvalid as err:
            name = (document.get("metadata") or {}).get("name", "?") if isinstance(document, dict) else "?"
            kind = document.get("kind", "?") if isinstance(document, dict) else "?"
            errors.append(f"{source}: {kind} {name!r} is invalid: {err}")
    if errors:
        for error in errors:
            err_console.print(f"[red]error:[/red] {escape(error)}")
        raise typer.Exit(1)
    return resources


def _comparable(resource: Resource) -> dict[str, Any]:
    """What applying a resource sets: its spec, labels and annotations (not what the system generates)."""
    document = resource.to_document(with_status=False)
    meta = document.get("metadata") or {}
    kept = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if meta.get(k)}
    return {
        "apiVersion": document.get("apiVersion"),
        "kind": document.get("kind"),
        "metadata": kept,
        **{k: v for k, v in document.items() if k not in ("apiVersion", "kind", "metadata")},
    }


def _diff(current: Resource | None, wanted: Resource) -> str:
    """A unified diff (YAML) from what is stored to what the file says; empty when they are the same."""
    import difflib

    label = f"{wanted.KIND}/{wanted.namespace}/{wanted.name}"
    before = yaml.safe_dump(_comparable(current), sort_keys=True).splitlines(keepends=True) if current else []
    after = yaml.safe_dump(_comparable(wanted), sort_keys=True).splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, after, f"stored {label}", f"applied {label}"))


def _changes(resources: list[Resource]) -> list[tuple[Resource, str, str]]:
    """For each resource: what applying it would do (created, configured, unchanged) and the diff."""

    async def compare(client: ResourceClient) -> list[tuple[Resource, str, str]]:
        out = []
        for resource in resources:
            current = await client.get(resource.key)
            diff = _diff(current, resource)
            action = "created" if current is None else ("configured" if diff else "unchanged")
            out.append((resource, action, diff))
        return out

    return _client_call(compare)


def _kubernetes_only(resource: Resource) -> str:
    return (
        f"{resource.KIND} runs in Kubernetes mode only: the local store keeps it, but it is never Ready here "
        "(reason KubernetesOnly); apply it to a cluster instead (kev --kubeconfig PATH apply -f ...)"
    )


@app.command()
def apply(
    filename: list[str] = typer.Option(..., "-f", "--filename", help="File, directory or - for stdin."),
    namespace: str | None = typer.Option(
        None, "-n", "--namespace", help="Namespace for resources without one."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Validate and say what would change (with the diff); write nothing."
    ),
) -> None:
    """Create or update resources from Knative YAML."""
    resources = _parse_all(filename, namespace)
    for resource in resources:
        warnings = resource.warnings()
        if resource.KUBERNETES_ONLY and not settings.kubernetes:
            warnings = [*warnings, _kubernetes_only(resource)]
        for warning in warnings:
            # As kubectl prints an admission warning: on stderr, the apply goes on.
            err_console.print(
                f"[yellow]Warning:[/yellow] {resource.KIND.lower()}.{_group(resource)}/{resource.name}: "
                f"{escape(warning)}"
            )
    if dry_run:
        for resource, action, diff in _changes(resources):
            console.print(f"{resource.KIND.lower()}.{_group(resource)}/{resource.name} {action} (dry run)")
            if action == "configured":
                console.print(diff, markup=False, highlight=False, soft_wrap=True, end="")
        return

    async def apply_all(client: ResourceClient) -> list[tuple[Resource, str]]:
        return list(zip(resources, await client.apply_all(resources), strict=True))

    for resource, action in _client_call(apply_all):
        console.print(f"{resource.KIND.lower()}.{_group(resource)}/{resource.name} {action}")


@app.command()
def diff(
    filename: list[str] = typer.Option(..., "-f", "--filename", help="File, directory or - for stdin."),
    namespace: str | None = typer.Option(
        None, "-n", "--namespace", help="Namespace for resources without one."
    ),
) -> None:
    """Show how the files differ from what is stored (a unified diff); exit 1 when they differ, as kubectl."""
    changed = False
    for _resource, action, text in _changes(_parse_all(filename, namespace)):
        if action != "unchanged":
            changed = True
            sys.stdout.write(text)
    raise typer.Exit(1 if changed else 0)


@app.command()
def explain(
    kind: str = typer.Argument(..., help="broker, trigger, ... (as kubectl takes it)"),
) -> None:
    """The fields keventing serves for a kind: every path, its type and what it may be."""
    from keventing.resources.crds import generate_crd

    cls = _resolve_kind(kind)
    if cls.KIND == "ConfigMap":
        raise fail("ConfigMap is Kubernetes' own kind: keventing reads its data only")
    crd = generate_crd(cls)
    versions = [v["name"] for v in crd["spec"]["versions"]]
    group = crd["spec"]["group"]
    console.print(f"KIND:     {cls.KIND}\nVERSIONS: {', '.join(f'{group}/{v}' for v in versions)}\n")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    for line in _field_lines(schema.get("spec") or {}, "spec"):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _field_lines(schema: dict[str, Any], path: str) -> list[str]:
    """``path <type>`` for a schema node and everything under it (arrays as ``path[]``)."""
    kind = schema.get("type", "object")
    detail = ""
    if "enum" in schema:
        detail = " one of: " + ", ".join(str(v) for v in schema["enum"] if v is not None)
    lines = [f"{path} <{kind}>{detail}"]
    if kind == "array" and isinstance(schema.get("items"), dict):
        return lines + _field_lines(schema["items"], f"{path}[]")[1:]
    for name, child in sorted((schema.get("properties") or {}).items()):
        lines += _field_lines(child, f"{path}.{name}")
    return lines


def _group(resource: Resource) -> str:
    api = resource.apiVersion
    return api.split("/", 1)[0] if "/" in api else "core"


def _resolve_kind(kind: str) -> type[Resource]:
    try:
        return kind_for(kind)
    except UnknownKind as err:
        raise fail(str(err)) from None


@app.command()
def get(
    kind: str = typer.Argument(..., help="broker, trigger, ... (as kubectl takes it)"),
    name: str | None = typer.Argument(None),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces"),
    output: str = typer.Option("table", "-o", "--output", help="table, yaml or json"),
) -> None:
    """List resources with their READY status and URL (or the reason they are not ready)."""
    cls = _resolve_kind(kind)
    if output not in ("table", "yaml", "json"):
        raise fail(f"unknown output format {output!r}: use table, yaml or json")
    ns = None if all_namespaces else namespace

    async def fetch(client: ResourceClient) -> list[Resource]:
        return await client.list(cls.KIND, ns)

    found = [r for r in _client_call(fetch) if name is None or r.name == name]
    if name is not None and not found:
        raise fail(f'{cls.KIND} "{name}" not found in namespace "{namespace}"')
    documents = [r.display_document() for r in found]
    if output == "json":
        payload: Any = documents[0] if name else {"apiVersion": "v1", "kind": "List", "items": documents}
        sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif output == "yaml":
        payload = documents[0] if name else {"apiVersion": "v1", "kind": "List", "items": documents}
        sys.stdout.write(yaml.safe_dump(payload, sort_keys=False))
    else:
        print_table(found, all_namespaces)


def print_table(resources: list[Resource], with_namespace: bool) -> None:
    if not resources:
        console.print("No resources found.")
        return
    extra = EXTRA_COLUMNS.get(resources[0].KIND, ())
    header = [*(["NAMESPACE"] if with_namespace else []), "NAME", *(name for name, _ in extra)]
    header += ["READY", "URL/REASON", "AGE"]
    rows = [header]
    for r in resources:
        ready = r.status.condition("Ready")
        status = ready.status if ready else "Unknown"
        if status == "True":
            detail = _url_of(r)
        else:
            detail = (ready.message or ready.reason or "") if ready else "not reconciled yet"
        row = [r.name, *(value(r) or "" for _, value in extra), status, detail]
        row.append(_age(r.metadata.creationTimestamp))
        rows.append([*([r.namespace] if with_namespace else []), *row])
    _print_columns(rows)


def _print_columns(rows: list[list[str]]) -> None:
    """Columns as kubectl prints them: padded to the widest cell, three spaces apart, never wrapped.

    Plain text, written at once: 10,000 EventTypes (auto-create's bound) print in well under a second, where
    a rich Table measured every cell for half a minute.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    if console.is_terminal:
        console.print(lines[0], style="bold", markup=False, highlight=False, soft_wrap=True)
        lines = lines[1:]
    sys.stdout.write("\n".join(lines) + "\n")


def _reference_of(resource: Resource) -> str:
    reference = resource.reference if isinstance(resource, EventType) else None
    return f"{reference.kind}/{reference.name}" if reference else ""


# What identifies a resource of some kinds better than its name (kubectl's additional printer columns).
EXTRA_COLUMNS: dict[str, tuple[tuple[str, Callable[[Resource], str | None]], ...]] = {
    "EventType": (
        ("TYPE", lambda r: r.spec.type),
        ("SOURCE", lambda r: r.spec.source),
        ("REFERENCE", _reference_of),
    ),
    "PingSource": (("SCHEDULE", lambda r: r.spec.schedule),),
    "KafkaSink": (("TOPIC", lambda r: r.spec.topic), ("MODE", lambda r: r.spec.contentMode or "structured")),
    "KafkaSource": (("TOPICS", lambda r: ",".join(r.spec.topics)),),
}


def _url_of(resource: Resource) -> str:
    status = resource.status
    if status.address is not None and status.address.url:
        return status.address.url
    for attribute in ("subscriberUri", "sinkUri"):
        value = getattr(status, attribute, None)
        if value:
            return str(value)
    return ""


def _age(created: str | None) -> str:
    from datetime import UTC, datetime

    if not created:
        return ""
    seconds = int(
        (datetime.now(UTC) - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()
    )
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


@app.command()
def describe(
    kind: str = typer.Argument(...),
    name: str = typer.Argument(...),
    namespace: str = typer.Option("default", "-n", "--namespace"),
) -> None:
    """Show a resource's spec, status and conditions."""
    cls = _resolve_kind(kind)

    async def fetch(client: ResourceClient) -> Resource | None:
        return await client.get(ResourceKey(cls.KIND, namespace, name))

    resource = _client_call(fetch)
    if resource is None:
        raise fail(f'{cls.KIND} "{name}" not found in namespace "{namespace}"')
    document = resource.display_document()
    conditions = document.get("status", {}).pop("conditions", [])
    console.print(f"[bold]Name:[/bold]       {resource.name}")
    console.print(f"[bold]Namespace:[/bold]  {resource.namespace}")
    console.print(f"[bold]Kind:[/bold]       {resource.KIND} ({resource.apiVersion})")
    console.print(f"[bold]Generation:[/bold] {resource.metadata.generation}")
    if resource.metadata.annotations:
        console.print("[bold]Annotations:[/bold]")
        for k, v in resource.metadata.annotations.items():
            console.print(f"  {k}: {v}")
    extra = {k: v for k, v in document.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    if extra:
        console.print("[bold]Spec:[/bold]")
        console.print(yaml.safe_dump(extra, sort_keys=False).rstrip(), markup=False)
    status = {k: v for k, v in document.get("status", {}).items() if v}
    if status:
        console.print("[bold]Status:[/bold]")
        console.print(yaml.safe_dump(status, sort_keys=False).rstrip(), markup=False)
    console.print("[bold]Conditions:[/bold]")
    table = Table(box=None, header_style="bold")
    for column in ("TYPE", "STATUS", "REASON", "MESSAGE", "LAST TRANSITION"):
        table.add_column(column)
    for c in conditions:
        table.add_row(
            c["type"], c["status"], c.get("reason", ""), c.get("message", ""), c.get("lastTransitionTime", "")
        )
    console.print(table)


@app.command()
def delete(
    kind: str = typer.Argument(...),
    name: str = typer.Argument(...),
    namespace: str = typer.Option("default", "-n", "--namespace"),
) -> None:
    """Delete a resource (a Broker's topic goes with it)."""
    cls = _resolve_kind(kind)
    key = ResourceKey(cls.KIND, namespace, name)

    async def remove(client: ResourceClient) -> bool:
        return await client.delete(key)

    if not _client_call(remove):
        raise fail(f'{cls.KIND} "{name}" not found in namespace "{namespace}"')
    console.print(f'{cls.KIND.lower()} "{name}" deleted')


# --------------------------------------------------------------------------------------------- events


@event_app.command("send")
def event_send(
    broker: str | None = typer.Option(None, "--broker", "-b", help="Broker name (its address is looked up)."),
    to: str | None = typer.Option(None, "--to", help="Any URL to POST the event to."),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    type_: str = typer.Option("dev.keventing.example", "--type", "-t"),
    source: str = typer.Option("kev-cli", "--source", "-s"),
    id_: str | None = typer.Option(None, "--id", help="Event id (default: a new UUID)."),
    data: str | None = typer.Option(None, "--data", "-d", help="Event data (JSON or text)."),
    content_type: str = typer.Option("application/json", "--content-type"),
    extension: list[str] = typer.Option(
        [], "--ext", "-e", help="Extension attribute name=value (repeatable)."
    ),
    structured: bool = typer.Option(False, "--structured", help="Send in structured mode."),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="A file holding an OIDC token to send as Authorization: Bearer."
    ),
    cacert: Path | None = typer.Option(
        None, "--cacert", help="PEM CA certificates to trust for an https URL."
    ),
) -> None:
    """Send one CloudEvent (binary mode by default) and print the response status."""
    import httpx
    from cloudevents.core.bindings import http as ce_http
    from cloudevents.core.v1.event import CloudEvent

    if (broker is None) == (to is None):
        raise fail("give exactly one of --broker NAME or --to URL")
    url = to or _broker_url(broker or "", namespace)
    attributes: dict[str, Any] = {
        "type": type_,
        "source": source,
        "id": id_ or str(uuid.uuid4()),
        "specversion": "1.0",
    }
    for item in extension:
        if "=" not in item:
            raise fail(f"--ext {item!r}: expected name=value")
        key, value = item.split("=", 1)
        attributes[key] = value
    payload: Any = None
    if data is not None:
        attributes["datacontenttype"] = content_type
        payload = data.encode()
        if content_type.endswith("json"):
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise fail("--data is not valid JSON; pass --content-type text/plain to send text") from None
    event = CloudEvent(attributes=attributes, data=payload)
    from cloudevents.core.formats.json import JSONFormat

    message = (
        ce_http.to_structured(event, JSONFormat()) if structured else ce_http.to_binary(event, JSONFormat())
    )
    headers = dict(message.headers)
    if token_file is not None:
        try:
            headers["authorization"] = f"Bearer {token_file.read_text().strip()}"
        except OSError as err:
            raise fail(f"--token-file {token_file}: {err.strerror}") from None
    verify: ssl.SSLContext | bool = True
    if cacert is not None:
        try:
            verify = ssl.create_default_context(cafile=str(cacert))
        except (OSError, ssl.SSLError) as err:
            raise fail(f"--cacert {cacert}: {err}") from None
    try:
        response = httpx.post(url, headers=headers, content=message.body, timeout=30, verify=verify)
    except httpx.HTTPError as err:
        raise fail(f"POST {url} failed: {err}") from None
    console.print(f"{response.status_code} {response.reason_phrase}  (id {attributes['id']} → {url})")
    if response.text:
        console.print(response.text.rstrip(), markup=False)
    if response.status_code >= 300:
        raise typer.Exit(1)


def _broker_url(name: str, namespace: str) -> str:
    async def fetch(client: ResourceClient) -> Resource | None:
        return await client.get(ResourceKey("Broker", namespace, name))

    broker = _client_call(fetch)
    if broker is None:
        raise fail(f'Broker "{name}" not found in namespace "{namespace}"')
    if broker.status.address is None or not broker.status.address.url:
        raise fail(f'Broker "{name}" has no address yet (is `kev controller` running?)')
    return broker.status.address.url


@app.command("events")
def events_show(
    broker: str | None = typer.Option(None, "--broker", "-b", help="The Broker whose topic to read."),
    channel: str | None = typer.Option(
        None, "--channel", help="A channel's topic instead (KafkaChannel, InMemoryChannel, a Channel's)."
    ),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    filter_: str | None = typer.Option(
        None, "--filter", help="A CESQL expression (as in a Trigger's filters) the events must match."
    ),
    last: int = typer.Option(10, "--last", min=0, help="How many of the latest events to show first."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events (Ctrl-C stops)."),
    output: str = typer.Option("table", "-o", "--output", help="table or json (one event per line)"),
) -> None:
    """Show the events on a Broker's (or channel's) topic, read without any consumer group."""
    from kev.cli.observe import NotFound, show_events
    from kev.tail import FilterError, TailError, cesql_filter

    if (broker is None) == (channel is None):
        raise fail("give exactly one of --broker NAME or --channel NAME")
    if output not in ("table", "json"):
        raise fail(f"unknown output format {output!r}: use table or json")
    try:
        matches = cesql_filter(filter_)
    except FilterError as err:
        raise fail(f"--filter: {err}") from None
    kinds = ("Broker",) if broker else ("KafkaChannel", "InMemoryChannel")
    target = (kinds, namespace, broker or channel or "")
    try:
        asyncio.run(show_events(settings, target, matches, last, follow, output == "json"))
    except (NotFound, TailError) as err:
        raise fail(str(err)) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command("trace")
def trace(
    event_id: str = typer.Argument(..., help="The CloudEvent id (ce-id) to follow."),
    broker: str | None = typer.Option(None, "--broker", "-b", help="Look on this Broker's topic only."),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces", help="Every namespace's Brokers."),
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """Follow one event: where it is on a Broker's topic, which Triggers select it, whether each one's
    consumer group has committed past it, and whether it reached a dead-letter sink on Kafka."""
    from kev.cli.observe import NotFound, brokers_named, print_traces, trace_event, trace_json
    from kev.tail import TailError

    if output not in ("table", "json"):
        raise fail(f"unknown output format {output!r}: use table or json")
    picked = brokers_named(None if all_namespaces and broker is None else namespace, broker)
    try:
        traces = asyncio.run(trace_event(settings, event_id, picked))
    except (NotFound, TailError) as err:
        raise fail(str(err)) from None
    if output == "json":
        sys.stdout.write(orjson.dumps(trace_json(traces), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print_traces(traces)
    if not traces:
        where = f'Broker "{broker}"' if broker else "any Broker's topic"
        raise fail(f'event "{event_id}" not found on {where}')


# ----------------------------------------------------------------------------------------- operations


def _trigger_key(trigger: str, namespace: str) -> ResourceKey:
    """``NAME`` in ``namespace``, or ``NAMESPACE/NAME``."""
    if "/" in trigger:
        namespace, _, trigger = trigger.partition("/")
    if not trigger or not namespace:
        raise fail(f"{trigger!r}: give the Trigger as NAME (with -n NAMESPACE) or NAMESPACE/NAME")
    return ResourceKey("Trigger", namespace, trigger)


def _epoch_ms(text: str, option: str) -> int:
    """An RFC 3339 time (``2026-01-31T12:00:00Z``), or an ISO-8601 duration before now (``PT10M``)."""
    import time
    from datetime import datetime

    from keventing.durations import parse_duration

    if text.upper().startswith("P"):
        try:
            return int((time.time() - parse_duration(text)) * 1000)
        except ValueError as err:
            raise fail(f"{option}: {err}") from None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise fail(
            f"{option}: {text!r} is neither an RFC 3339 time nor an ISO-8601 duration (PT10M)"
        ) from None
    if when.tzinfo is None:
        raise fail(f"{option}: {text!r} has no time zone: add Z or an offset such as +01:00")
    return int(when.timestamp() * 1000)


@app.command("replay")
def replay_trigger(
    trigger: str = typer.Argument(..., help="The Trigger: NAME (see -n) or NAMESPACE/NAME."),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    from_offset: int | None = typer.Option(
        None, "--from-offset", min=0, help="Deliver again from this offset of every partition."
    ),
    from_time: str | None = typer.Option(
        None, "--from-time", help="From the first record written at or after an RFC 3339 time or PT10M ago."
    ),
    to_earliest: bool = typer.Option(False, "--to-earliest", help="From the oldest record kept."),
    to_latest: bool = typer.Option(False, "--to-latest", help="Skip everything not yet delivered."),
    partition: list[int] = typer.Option([], "--partition", "-p", help="Only this partition (repeatable)."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for each step."),
) -> None:
    """Reset a Trigger's position on its Broker's topic. The Trigger is paused meanwhile (its consumer group
    must have no members for Kafka to alter its offsets), then resumed; each partition's move is printed."""
    from aiokafka.errors import KafkaError

    from kev.replay import Position, ReplayError, replay

    chosen = [from_offset is not None, from_time is not None, to_earliest, to_latest]
    if sum(chosen) != 1:
        raise fail("give exactly one of --from-offset N, --from-time TIME, --to-earliest or --to-latest")
    if from_offset is not None:
        position = Position("offset", offset=from_offset)
    elif from_time is not None:
        position = Position("time", timestamp_ms=_epoch_ms(from_time, "--from-time"))
    else:
        position = Position("earliest" if to_earliest else "latest")
    key = _trigger_key(trigger, namespace)

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    async def run(client: ResourceClient) -> None:
        moved = await replay(client, settings, key, position, set(partition), timeout, say)
        for m in moved:
            before = "none" if m.before is None else str(m.before)
            say(f"  {m.partition.topic} partition {m.partition.partition}: {before} -> {m.after}")

    try:
        _client_call(run)
    except (ReplayError, KafkaError) as err:
        raise fail(str(err)) from None


@app.command("redrive")
def redrive(
    trigger: str = typer.Argument(..., help="The Trigger: NAME (see -n) or NAMESPACE/NAME."),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    topic: str | None = typer.Option(
        None, "--topic", help="The dead-letter topic (default: the Trigger's dead-letter KafkaSink's)."
    ),
    from_time: str | None = typer.Option(
        None, "--from-time", help="Only letters written at or after an RFC 3339 time or PT10M ago."
    ),
    every: bool = typer.Option(
        False,
        "--all",
        help="Every event on the topic, not only those that failed at this Trigger's subscriber.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be redriven; send nothing."),
) -> None:
    """Send the events a Trigger dead-lettered to a Kafka topic back to that Trigger alone (its Broker's
    other Triggers do not get them again), without Knative's knativeerror* extensions."""
    from aiokafka.errors import KafkaError

    from kev.redrive import RedriveError, read, send
    from kev.tail import TailError

    key = _trigger_key(trigger, namespace)
    from_ms = _epoch_ms(from_time, "--from-time") if from_time is not None else None

    async def run() -> tuple[str, int]:
        plan, letters = await read(settings, key, topic, from_ms, every)
        where = f"{plan.dead_letter_topic} -> {plan.broker_topic} for {plan.egress.id}"
        if dry_run:
            for letter in letters:
                a = letter.attributes
                console.print(
                    f"{letter.partition}/{letter.offset}  {a.get('id', '')}  {a.get('type', '')}  "
                    f"code {a.get('knativeerrorcode', '-')}",
                    markup=False,
                    highlight=False,
                )
            return where, len(letters)
        return where, await send(plan, letters)

    try:
        where, count = asyncio.run(run())
    except (RedriveError, TailError, KafkaError) as err:
        raise fail(str(err)) from None
    verb = "would redrive" if dry_run else "redrove"
    console.print(f"{verb} {count} event{'s' if count != 1 else ''} ({where})", markup=False, highlight=False)


@app.command("console")
def console_service(
    port: int | None = typer.Option(None, "--port", "-p", help="Default: KEVENTING_CONSOLE_PORT or 8093."),
    host: str | None = typer.Option(None, "--host", help="Default: KEVENTING_HTTP_HOST or 0.0.0.0."),
) -> None:
    """Serve the console: topology, live tails, resources and dead letters in a browser (read-only)."""
    from kev.console.main import main as run
    from kev.console.state import ConsoleSettings

    overrides: dict[str, Any] = {}
    if settings.kubernetes:
        overrides.update(kubernetes=True, kubeconfig=settings.kubeconfig, kube_context=settings.kube_context)
    if port is not None:
        overrides["http_port"] = port
    if host is not None:
        overrides["http_host"] = host
    run(ConsoleSettings(**overrides))


@app.command("event-display")
def event_display(
    port: int = typer.Option(8081, "--port", "-p"),
    host: str = typer.Option("0.0.0.0", "--host"),
) -> None:
    """Run the sample sink that prints every event it receives."""
    import uvicorn

    from kev.eventdisplay import EventDisplayApp

    uvicorn.run(EventDisplayApp(), host=host, port=port, log_level="warning", access_log=False, loop="uvloop")


# ------------------------------------------------------------------------------------------- services


@app.command("contract-key")
def contract_key(
    path: Path = typer.Argument(..., help="The key file (KEVENTING_CONTRACT_KEY_FILE)."),
) -> None:
    """Write a new random contract key to PATH, unless it exists (docker-compose.yml's one-shot runs this)."""
    from kev.stack import ensure_key_file

    ensure_key_file(path)
    path.chmod(0o644)  # the services run as another user in the containers that mount it


@app.command()
def receiver() -> None:
    """Run the ingress (HTTP → Kafka)."""
    from receiver.main import main as run

    run()


@app.command()
def dispatcher() -> None:
    """Run the egress (Kafka → HTTP)."""
    from dispatcher.main import main as run

    run()


@app.command()
def controller(
    kubernetes: bool = typer.Option(
        False, "--kubernetes", help="Reconcile Knative resources from a Kubernetes API server (kopf)."
    ),
    kubeconfig: str | None = typer.Option(
        None, help="Kubeconfig file (default: in-cluster, then ~/.kube/config)."
    ),
    context: str | None = typer.Option(None, help="The kubeconfig context to use."),
) -> None:
    """Run the control plane (resources → topics, contract, statuses)."""
    from controller.main import main as run
    from controller.settings import ControllerSettings

    # The environment configures the controller like every service; the flags (`kev --kubeconfig PATH
    # controller` too) override it.
    kubeconfig = kubeconfig or (settings.kubeconfig if settings.kubernetes else None)
    context = context or settings.kube_context
    overrides: dict[str, Any] = {"kubernetes": True} if kubernetes or settings.kubernetes else {}
    if kubeconfig:
        overrides["kubeconfig"] = kubeconfig
    if context:
        overrides["kube_context"] = context
    run(ControllerSettings(**overrides))


@app.command("sources")
def sources_runner() -> None:
    """Run the source adapters (PingSource schedules, ContainerSource processes)."""
    from sources.main import main as run

    run()


@app.command("run")
def run_bound(
    binding: str = typer.Option(..., "--binding", "-b", help="The SinkBinding whose sink the program gets."),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    command: list[str] = typer.Argument(..., help="The program and its arguments (after --)."),
) -> None:
    """Run a program with a SinkBinding's K_SINK and K_CE_OVERRIDES: kev run --binding NAME -- CMD ARGS..."""
    from keventing.binding import binding_env

    async def fetch(client: ResourceClient) -> Resource | None:
        return await client.get(ResourceKey("SinkBinding", namespace, binding))

    found = _client_call(fetch)
    if not isinstance(found, SinkBinding):
        raise fail(f'SinkBinding "{binding}" not found in namespace "{namespace}"')
    sink = found.status.sinkUri
    if not sink:
        ready = found.status.condition("Ready")
        why = f": {ready.message or ready.reason}" if ready and (ready.message or ready.reason) else ""
        raise fail(f'SinkBinding "{binding}" has no sink yet{why} (is `kev controller` running?)')
    env = {**os.environ, **binding_env(sink, found.ce_overrides)}
    try:
        os.execvpe(command[0], command, env)
    except OSError as err:
        raise fail(f"cannot run {command[0]!r}: {err}", code=127) from None


@app.command()
def up(
    examples: Path = typer.Option(Path("examples/quickstart"), "--apply", help="Resources to apply once up."),
    demo: bool = typer.Option(False, "--demo", help="Send the quickstart event, show it, stop."),
    kubernetes: bool = typer.Option(
        False, "--kubernetes", help="The controller reconciles resources from a Kubernetes cluster."
    ),
    kubeconfig: str | None = typer.Option(None, help="With --kubernetes: the cluster's kubeconfig."),
) -> None:
    """Run embedded Kafka, controller, receiver, dispatcher, sources and event-display; Ctrl-C stops all."""
    from kev.cli.up import run_up

    raise typer.Exit(run_up(examples, demo, kubeconfig=kubeconfig, kubernetes=kubernetes))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
