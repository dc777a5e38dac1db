"""The deployable artefacts stay true to the code: the Dockerfile, docker-compose.yml, the Helm chart, the
Grafana dashboard and the Prometheus config run real `kev` commands, on the ports and with the environment
variables the services read, and query only metrics the services export. Nothing here needs Docker, Helm
or Kafka."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml

from controller.settings import ControllerSettings
from dispatcher.settings import DispatcherSettings
from kev.cli.main import app
from kev.console.state import ConsoleSettings
from kev.kafka.embedded import KAFKA_VERSION
from kev.stack import ALL_SERVICES
from keventing.resources import parse_resource
from keventing.settings import CommonSettings
from receiver.settings import ReceiverSettings
from sources.settings import SourcesSettings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "keventing"
DASHBOARD = CHART / "dashboards" / "keventing.json"

SETTINGS: dict[str, type[CommonSettings]] = {
    "receiver": ReceiverSettings,
    "dispatcher": DispatcherSettings,
    "controller": ControllerSettings,
    "sources": SourcesSettings,
}
# Each service's entry module: importing it registers every metric the service exports. Each is imported
# in an interpreter of its own: the receiver and the dispatcher both register `event_count`, so one
# process's registry cannot hold both.
METRIC_MODULES = {name: f"{name}.main" for name in ("receiver", "dispatcher", "controller", "sources")}
# Labels Prometheus adds to every series from the scrape target (static configs, ServiceMonitor).
TARGET_LABELS = {"job", "instance", "service", "namespace", "pod", "container", "endpoint"}
# In the image the working directory is /app; compose mounts ./examples there.
IMAGE_WORKDIR = "/app"


@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def default_port(service: str) -> int:
    return int(SETTINGS[service].model_fields["http_port"].default)


def port_variable(service: str) -> str:
    return str(SETTINGS[service].model_fields["http_port"].alias)


def settings_variables() -> set[str]:
    """Every environment variable a keventing service reads."""
    classes: list[type[CommonSettings]] = [CommonSettings, *SETTINGS.values(), ConsoleSettings]
    return {f.alias for cls in classes for f in cls.model_fields.values() if f.alias}


# ------------------------------------------------------------------------------------------------- kev CLI


def kev_command(args: list[str]) -> Any:
    """Parse ``kev ARGS`` exactly as the CLI would, without running it; returns the leaf command's context.

    Raises the CLI's usage error for an unknown command or option, a bad value or a missing argument.
    """
    command: Any = typer.main.get_command(app)
    path = ["kev"]
    args = list(args)
    while hasattr(command, "commands"):
        assert args, f"`{' '.join(path)}` needs a subcommand"
        name = args.pop(0)
        assert name in command.commands, f"`{' '.join(path)} {name}` is not a kev command"
        command = command.commands[name]
        path.append(name)
    return command.make_context(" ".join(path), args)


def test_kev_command_parser_rejects_what_the_cli_rejects() -> None:
    assert kev_command(["event-display", "--port", "9000"]).params["port"] == 9000
    with pytest.raises(AssertionError):
        kev_command(["recever"])
    with pytest.raises(Exception, match="No such option"):
        kev_command(["event-display", "--prot", "1"])


def event_display_default_port() -> int:
    command = typer.main.get_command(app).commands["event-display"]  # type: ignore[attr-defined]
    return int(next(p.default for p in command.params if p.name == "port"))


# -------------------------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def dockerfile_global_args() -> dict[str, str]:
    """The ARGs before the first FROM with their defaults: the only ones a FROM line can use."""
    found = {}
    for op, arg in dockerfile_instructions():
        if op == "FROM":
            break
        if op == "ARG":
            name, _, default = arg.partition("=")
            found[name] = default
    return found


def resolve_from(image: str) -> str:
    """A FROM image with the global ARG defaults substituted (``${BASE_IMAGE}`` -> ``python:3.11-slim``)."""
    args = dockerfile_global_args()
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args[m[1]], image)


def test_image_is_built_on_python_3_11_slim_unless_another_base_is_passed() -> None:
    stages = [arg.split()[0] for op, arg in dockerfile_instructions() if op == "FROM"]
    assert stages == ["${BASE_IMAGE}", "${BASE_IMAGE}"], "both stages on the one base (the venv's python)"
    assert resolve_from(stages[-1]) == "python:3.11-slim"
    for name, service in keventing_services().items():
        assert service["build"]["args"] == {"BASE_IMAGE": "${KEVENTING_BASE_IMAGE:-python:3.11-slim}"}, name


def test_image_runs_kev_as_a_non_root_user_with_a_healthcheck() -> None:
    instructions = dockerfile_instructions()
    final_stage = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    assert resolve_from(final_stage[0][1].split()[0]) == "python:3.11-slim"
    values = {op: arg for op, arg in final_stage}  # the last of each instruction wins, as in Docker
    assert json.loads(values["ENTRYPOINT"]) == ["kev"]
    kev_command(json.loads(values["CMD"]))
    user = values["USER"].split(":")[0]
    assert user not in ("root", "0") and user.isdigit(), "a numeric non-root USER (runAsNonRoot checks it)"
    healthcheck = values["HEALTHCHECK"]
    assert json.loads(healthcheck.split(" CMD ", 1)[1]) == ["python", "-m", "kev.healthcheck"]
    assert importlib.util.find_spec("kev.healthcheck") is not None
    assert not [arg for op, arg in final_stage if op == "RUN" and re.search(r"\b(pip|apt-get|gcc)\b", arg)], (
        "the final stage installs nothing: build tools stay in the build stage"
    )


def test_image_installs_every_package_the_project_ships() -> None:
    packages = {p.rstrip("*") for p in pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {
        source.rstrip("/")
        for op, arg in dockerfile_instructions()
        if op == "COPY" and "--from" not in arg
        for source in [a for a in arg.split() if not a.startswith("--")][:-1]
    }
    needed = packages | {"pyproject.toml", pyproject()["project"]["readme"], "examples"}
    assert needed <= copied, f"the Dockerfile does not COPY {sorted(needed - copied)}"
    assert any(op == "RUN" and "pip install ." in arg for op, arg in dockerfile_instructions())
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert not needed & ignored, f".dockerignore hides {sorted(needed & ignored)} from the build"


# ---------------------------------------------------------------------------------------- docker compose


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def keventing_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the keventing image (`kev ...`)."""
    return {name: s for name, s in compose()["services"].items() if "build" in s}


def healthcheck_url(service: dict[str, Any]) -> str:
    test = " ".join(service["healthcheck"]["test"])
    match = re.search(r"https?://[^\s'\"]+", test)
    assert match, f"no URL in healthcheck {test!r}"
    return match.group(0)


def published_container_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(p).rsplit(":", 1)[-1]) for p in service.get("ports", [])}


def test_compose_runs_every_service_kev_up_runs() -> None:
    assert set(ALL_SERVICES) | {"event-display"} <= set(keventing_services())


def test_every_compose_service_runs_a_real_kev_command() -> None:
    for name, service in keventing_services().items():
        kev_command(service["command"])  # raises on an unknown command or option
        if name in SETTINGS:
            assert service["command"] == [name]


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_compose_service_probes_and_publishes_the_port_its_settings_default_to(name: str) -> None:
    service = compose()["services"][name]
    port = default_port(name)
    url = urlsplit(healthcheck_url(service))
    assert (url.port, url.path) == (port, "/readyz")
    assert published_container_ports(service) <= {port}
    assert port_variable(name) not in service["environment"], (
        "the port is the settings default, not overridden"
    )


def test_event_display_listens_where_compose_probes_and_publishes() -> None:
    service = compose()["services"]["event-display"]
    port = kev_command(service["command"]).params["port"]
    assert port == event_display_default_port()
    assert urlsplit(healthcheck_url(service)).port == port
    assert published_container_ports(service) == {port}


def test_keventing_services_reach_kafka_on_its_internal_listener_and_wait_for_it() -> None:
    kafka = compose()["services"]["kafka"]["environment"]
    advertised = {listener.split("://", 1)[1] for listener in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    receiver_port = default_port("receiver")
    for name, service in keventing_services().items():
        environment = service["environment"]
        assert environment["KAFKA_BOOTSTRAP_SERVERS"] in advertised
        assert environment["KAFKA_BOOTSTRAP_SERVERS"].startswith("kafka:")
        assert environment["KEVENTING_INGRESS_URL"] == f"http://localhost:{receiver_port}"
        assert set(environment) <= settings_variables(), f"{name}: unknown variables"
        if name in SETTINGS:
            assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert f"{receiver_port}:{receiver_port}" in compose()["services"]["receiver"]["ports"]


def test_every_compose_service_has_a_healthcheck() -> None:
    for name, service in compose()["services"].items():
        if name not in ("quickstart", "contract-key"):  # one-shots
            assert service.get("healthcheck", {}).get("test"), name


def test_compose_services_that_follow_the_contract_read_the_key_the_one_shot_makes() -> None:
    maker = compose()["services"]["contract-key"]
    path = kev_command(maker["command"]).params["path"]
    volume = str(Path(path).parent)
    assert [v.split(":")[:2] for v in maker["volumes"]] == [["contract-key", volume]]
    assert "contract-key" in compose()["volumes"]
    for name in ALL_SERVICES:
        service = compose()["services"][name]
        assert service["environment"]["KEVENTING_CONTRACT_KEY_FILE"] == str(path)
        assert f"contract-key:{volume}:ro" in service["volumes"]
        assert service["depends_on"]["contract-key"]["condition"] == "service_completed_successfully"


def test_compose_kafka_is_the_version_the_embedded_kafka_runs() -> None:
    image = compose()["services"]["kafka"]["image"]
    # ${KEVENTING_KAFKA_IMAGE:-apache/kafka}:${KEVENTING_KAFKA_VERSION:-<version>}: tests swap the image only.
    match = re.fullmatch(
        r"\$\{KEVENTING_KAFKA_IMAGE:-([^}]+)\}:\$\{KEVENTING_KAFKA_VERSION:-([^}]+)\}", image
    )
    assert match, f"unexpected Kafka image {image!r}"
    assert match[1] == "apache/kafka"
    assert match[2] == KAFKA_VERSION


def test_compose_bind_mounts_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"


def test_quickstart_service_applies_the_quickstart_addressed_by_compose_service_names() -> None:
    service = compose()["services"]["quickstart"]
    params = kev_command(service["command"]).params
    mounted = [v.split(":")[:2] for v in service["volumes"]]
    documents = []
    for filename in params["filename"]:
        path = Path(IMAGE_WORKDIR, filename)
        host = next(ROOT / src / path.relative_to(dst) for src, dst in mounted if path.is_relative_to(dst))
        documents += [d for d in yaml.safe_load_all(host.read_text()) if d]
    for document in documents:
        parse_resource(document)  # what `kev apply` accepts
    quickstart = _quickstart_documents()
    assert sorted(d["kind"] for d in documents) == sorted(d["kind"] for d in quickstart)
    for document in documents:
        if document["kind"] == "Trigger":
            url = urlsplit(document["spec"]["subscriber"]["uri"])
            target = compose()["services"][url.hostname]
            assert url.port in published_container_ports(target) | {urlsplit(healthcheck_url(target)).port}
            local = next(d for d in quickstart if d["kind"] == "Trigger")
            local["spec"]["subscriber"]["uri"] = document["spec"]["subscriber"]["uri"]
            assert document == local, "examples/compose differs from examples/quickstart beyond the URL"


def _quickstart_documents() -> list[dict[str, Any]]:
    files = sorted((ROOT / "examples" / "quickstart").glob("*.yaml"))
    return [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]


# ------------------------------------------------------------------------------------------- Prometheus


def test_prometheus_scrapes_every_service_on_its_metrics_port() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets == {f"{name}:{default_port(name)}" for name in SETTINGS}
    assert set(SETTINGS) <= set(compose()["services"])


# -------------------------------------------------------------------------------------------- metrics

# Metrics are MetricSets made by the services at start-up: the probe makes every set the service defines.
_PROBE = """
import importlib, json, sys
from prometheus_client import REGISTRY
from keventing.metrics import MetricSet
importlib.import_module(sys.argv[1])
def every(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from every(sub)
for metric_set in every(MetricSet):
    metric_set.of(REGISTRY)
families = {}
for collector, names in list(REGISTRY._collector_to_names.items()):
    labels = list(getattr(collector, "_labelnames", ()))
    families[min(names, key=len)] = {"samples": sorted(names), "labels": labels}
print(json.dumps(families))
"""


@cache
def exported() -> dict[str, dict[str, dict[str, Any]]]:
    """{service: {family: {"samples": [sample names], "labels": [label names]}}}, from each service's
    prometheus-client registry."""
    probes = {
        service: subprocess.Popen(
            [sys.executable, "-c", _PROBE, module], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for service, module in METRIC_MODULES.items()
    }
    out = {}
    for service, probe in probes.items():
        stdout, stderr = probe.communicate(timeout=60)
        assert probe.returncode == 0, f"importing {METRIC_MODULES[service]} failed:\n{stderr.decode()}"
        out[service] = json.loads(stdout)
    return out


def sample_labels() -> dict[str, list[set[str]]]:
    """Every exported sample name with the label sets it has (one per service that exports it)."""
    out: dict[str, list[set[str]]] = {}
    for families in exported().values():
        for family in families.values():
            for sample in family["samples"]:
                labels = set(family["labels"]) | ({"le"} if sample.endswith("_bucket") else set())
                if labels not in out.setdefault(sample, []):
                    out[sample].append(labels)
    return out


# ------------------------------------------------------------------------------------------- dashboard

_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENTIFIER = re.compile(r"(?<![\w:$.])([a-zA-Z_:][\w:]*)(?![\w:])(\s*\()?")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Every metric selector of a PromQL expression: (metric name, [(label, operator, value)])."""
    found = [(m[1], _MATCHER.findall(m[2])) for m in _SELECTOR.finditer(expr)]
    rest = _SELECTOR.sub(" ", expr)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)
    rest = re.sub(r'"[^"]*"', " ", _GROUPING.sub(" ", rest))
    found += [(name, []) for name, call in _IDENTIFIER.findall(rest) if not call and name not in _KEYWORDS]
    return found


def groupings(expr: str) -> set[str]:
    return {label.strip() for group in _GROUPING.findall(expr) for label in group.split(",") if label.strip()}


def test_promql_reader_finds_metrics_matchers_and_groupings() -> None:
    expr = 'histogram_quantile(0.99, sum by (le, name) (rate(x_bucket{kind!="", a=~"$v"}[$__rate_interval]))) / y'
    assert selectors(expr) == [("x_bucket", [("kind", "!=", ""), ("a", "=~", "$v")]), ("y", [])]
    assert groupings(expr) == {"le", "name"}


@cache
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def dashboard_queries() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard_panels() for t in p["targets"]]


def test_dashboard_queries_only_metrics_the_services_export() -> None:
    exported = sample_labels()
    for title, expr in dashboard_queries():
        names = [name for name, _ in selectors(expr)]
        assert names, f"{title!r}: no metric in {expr!r}"
        unknown = [n for n in names if n not in exported]
        assert not unknown, f"{title!r} queries {unknown}, which no service exports"


def test_dashboard_filters_and_groups_by_labels_its_metrics_have() -> None:
    exported = sample_labels()
    for title, expr in dashboard_queries():
        known = TARGET_LABELS | {label for name, _ in selectors(expr) for s in exported[name] for label in s}
        for name, matchers in selectors(expr):
            for label, _, _ in matchers:
                assert any(label in s for s in exported[name]) or label in TARGET_LABELS, (
                    f"{title!r}: {name} has no label {label!r}"
                )
        assert groupings(expr) <= known, f"{title!r} groups by {sorted(groupings(expr) - known)}"


def _excludes_empty(operator: str, value: str) -> bool:
    """Whether a matcher drops series that do not have the label."""
    if operator == "=":
        return value != ""
    if operator == "!=":
        return value == ""
    matches_empty = re.fullmatch(value, "") is not None
    return not matches_empty if operator == "=~" else matches_empty


def test_dashboard_tells_the_receiver_and_dispatcher_metrics_apart() -> None:
    """The receiver and the dispatcher both export event_count and event_dispatch_latencies: every query on
    those names selects by a label only one of them has."""
    shared = {name: sets for name, sets in sample_labels().items() if len(sets) > 1}
    assert "event_count_total" in shared
    for title, expr in dashboard_queries():
        for name, matchers in selectors(expr):
            if name not in shared:
                continue
            first, *others = shared[name]
            distinguishing = first.union(*others) - first.intersection(*others)
            assert any(label in distinguishing and _excludes_empty(op, v) for label, op, v in matchers), (
                f"{title!r}: {name} mixes the receiver's and the dispatcher's series"
            )


# Served again under Knative's names, from the same series as a keventing family the dashboard shows.
KNATIVE_VIEWS = {"event_dispatch_in_flight_count"}


def test_dashboard_shows_every_keventing_metric() -> None:
    queried = {name for _, expr in dashboard_queries() for name, _ in selectors(expr)}
    for service, families in exported().items():
        for family, info in families.items():
            if family.startswith(("event_", "keventing_")) and family not in KNATIVE_VIEWS:
                assert queried & set(info["samples"]), f"the dashboard has no panel for {service}'s {family}"


def test_dashboard_variables_use_exported_labels() -> None:
    exported = sample_labels()
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\(\s*([\w:]+)\s*,\s*(\w+)\s*\)", query)
        assert match, f"variable {variable['name']}: unexpected query {query!r}"
        assert any(match[2] in s for s in exported[match[1]])


def test_dashboard_panels_have_unique_ids_and_use_the_datasource_variable() -> None:
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard()["uid"]
    for panel in dashboard_panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])


# ------------------------------------------------------------------------------------------ Helm chart

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.DOTALL)


@cache
def values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def templates() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((CHART / "templates").iterdir()) if p.is_file()}


def value_at(path: str) -> Any:
    node: Any = values()
    for key in path.split("."):
        assert isinstance(node, dict) and key in node, f".Values.{path} is not in values.yaml"
        node = node[key]
    return node


def render_values(text: str) -> str:
    """Substitute the simplest actions, `{{ .Values.a.b }}` and `{{ .Values.a.b | quote }}`."""
    return re.sub(
        r"\{\{-?\s*\.Values\.([\w.]+)(\s*\|\s*quote)?\s*-?\}\}",
        lambda m: json.dumps(str(value_at(m[1]))) if m[2] else str(value_at(m[1])),
        text,
    )


def test_chart_metadata_and_values_parse() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "keventing"
    assert chart["appVersion"] == pyproject()["project"]["version"]
    assert isinstance(values(), dict)


def test_template_actions_are_balanced() -> None:
    for name, text in templates().items():
        assert text.count("{{") == text.count("}}"), f"{name}: unbalanced {{{{ }}}}"
        depth = 0
        for action in _ACTION.findall(text):
            if action.startswith("/*"):
                continue
            keyword = action.split(None, 1)[0] if action else ""
            if keyword in ("if", "range", "with", "define", "block"):
                depth += 1
            elif keyword == "end":
                depth -= 1
                assert depth >= 0, f"{name}: an end without a block"
        assert depth == 0, f"{name}: {depth} block(s) without an end"


def test_every_values_path_a_template_uses_exists() -> None:
    for text in templates().values():
        for path in re.findall(r"\.Values((?:\.[A-Za-z_]\w*)+)", text):
            value_at(path[1:])


def test_every_included_template_is_defined() -> None:
    text = "\n".join(templates().values())
    defined = set(re.findall(r'define\s+"([^"]+)"', text))
    used = set(re.findall(r'(?:include|template)\s+"([^"]+)"', text))
    assert used <= defined, f"undefined templates {sorted(used - defined)}"


def test_files_the_chart_reads_exist() -> None:
    for path in re.findall(r'\.Files\.Get\s+"([^"]+)"', "\n".join(templates().values())):
        assert (CHART / path).is_file(), path


def test_chart_sets_only_variables_the_services_read() -> None:
    used = set(re.findall(r"name:\s*((?:KEVENTING|KAFKA)_[A-Z_]+)", "\n".join(templates().values())))
    assert used, "the templates set no keventing variables"
    assert used <= settings_variables(), f"no service reads {sorted(used - settings_variables())}"


def chart_deployments() -> dict[str, tuple[list[str], str]]:
    """{component: (kev arguments, values key)} of every `include "keventing.deployment"`."""
    found = {}
    call = re.compile(
        r'include "keventing\.deployment" \(dict "root" \. "component" "([\w-]+)" '
        r'"args" \(list ((?:"[^"]*"|\(toString \.Values\.[\w.]+\)|\s)+)\) "values" \.Values\.(\w+)'
    )
    for text in templates().values():
        for component, args, key in call.findall(text):
            tokens = re.findall(r'"([^"]*)"|\(toString \.Values\.([\w.]+)\)', args)
            found[component] = ([s or str(value_at(v)) for s, v in tokens], key)
    return found


def test_chart_deploys_every_service_with_a_real_kev_command() -> None:
    deployments = chart_deployments()
    assert set(ALL_SERVICES) | {"event-display"} <= set(deployments)
    for component, (args, _) in deployments.items():
        kev_command(args)
        assert args[0] == component


def test_chart_ports_are_the_settings_defaults_and_set_the_port_variable() -> None:
    deployments = chart_deployments()
    text = "\n".join(templates().values())
    for name in SETTINGS:
        key = deployments[name][1]
        assert values()[key]["port"] == default_port(name)
        variable = port_variable(name)
        setting = f"- name: {variable}\n  value: {{{{ .Values.{key}.port | quote }}}}"
        assert setting in text, f"the chart does not set {variable} from .Values.{key}.port"
    assert values()["eventDisplay"]["port"] == event_display_default_port()
    # The console (off by default) is no service of `kev up`'s, but its chart port is its default all the same.
    assert values()["console"]["port"] == ConsoleSettings.model_fields["http_port"].default
    assert "- name: KEVENTING_CONSOLE_PORT\n  value: {{ .Values.console.port | quote }}" in text
    assert values()["console"]["enabled"] is False


def test_chart_probes_readiness_and_liveness_on_the_ops_endpoints() -> None:
    helpers = templates()["_helpers.tpl"]
    assert re.search(r"readinessProbe:\s+httpGet:\s+path: /readyz\s+port: http\n", helpers)
    assert re.search(r"livenessProbe:\s+httpGet:\s+path: /healthz\s+port: http\n", helpers)
    deployment = templates()["_deployment.tpl"]
    assert 'include "keventing.probes"' in deployment
    assert re.search(r"- name: http\s+containerPort: \{\{ \$values\.port \}\}", deployment)


def test_chart_ships_the_dashboard_for_grafanas_sidecar() -> None:
    configmap = render_values(templates()["dashboard-configmap.yaml"])
    assert 'grafana_dashboard: "1"' in configmap
    assert '.Files.Get "dashboards/keventing.json"' in configmap
    assert values()["dashboard"]["enabled"] is True


# ------------------------------------------------------------------------------------------------- rules

RULES = CHART / "rules" / "keventing.rules.yml"


@cache
def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_rules_query_only_metrics_and_labels_the_services_export() -> None:
    exported = sample_labels()
    recorded = {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}
    for rule in rules():
        name = rule.get("record") or rule["alert"]
        for metric, matchers in selectors(rule["expr"]):
            if metric in recorded:
                continue
            assert metric in exported, f"{name} queries {metric}, which no service exports"
            for label, _, _ in matchers:
                assert any(label in s for s in exported[metric]), f"{name}: {metric} has no label {label!r}"


def test_alerts_cover_lag_dead_letters_ingress_errors_and_readiness() -> None:
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    queried = {alert: {m for m, _ in selectors(rule["expr"])} for alert, rule in alerts.items()}
    assert "keventing:consumer_lag:sum" in queried["KeventingConsumerLagHigh"]
    assert "keventing:dead_lettered:rate5m" in queried["KeventingDeadLettersRising"]
    assert "keventing_dispatcher_dropped_total" in queried["KeventingEventsDropped"]
    assert "keventing:ingress_5xx:ratio_rate5m" in queried["KeventingIngressErrors"]
    assert 'response_code="503"' in alerts["KeventingIngressUnavailable"]["expr"]
    assert "keventing_controller_resource_ready" in queried["KeventingResourceNotReady"]
    for alert, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), alert
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], alert


def test_chart_serves_the_rules_as_a_prometheus_rule_behind_a_value() -> None:
    template = templates()["prometheusrule.yaml"]
    assert "{{- if .Values.metrics.prometheusRule.enabled }}" in template
    assert "kind: PrometheusRule" in template
    assert '.Files.Get "rules/keventing.rules.yml"' in template
    assert values()["metrics"]["prometheusRule"] == {"enabled": False, "labels": {}}
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]["metrics"]["properties"]["prometheusRule"]["properties"]) == {
        "enabled",
        "labels",
    }


def test_compose_prometheus_loads_the_charts_rules() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    [rule_file] = config["rule_files"]
    mounts = compose()["services"]["prometheus"]["volumes"]
    assert f"./{RULES.relative_to(ROOT)}:{rule_file}:ro" in mounts


def test_chart_defaults_suit_a_kafka_cluster() -> None:
    assert values()["defaultTopic"]["replicationFactor"] == 3
    # Empty: the template picks 2 (leader and standby) in Kubernetes mode, 1 in local mode.
    assert values()["controller"]["replicas"] is None
    assert 'ternary 2 1 (eq .Values.controller.mode "kubernetes")' in templates()["controller.yaml"]
    assert values()["kafka"]["bootstrapServers"]
