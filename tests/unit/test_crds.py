"""The CRDs in charts/keventing/crds are generated from the models, structural, and accept the examples.

What only an apiserver can tell (that it accepts the CRDs, prunes and validates as expected, serves the
printer columns) belongs in a cluster test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from keventing.resources.crds import HEADER, PRESERVE, file_name, generate_crds, render, structural
from keventing.resources.registry import KINDS

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "charts" / "keventing" / "crds"
CRDS = {crd["spec"]["names"]["kind"]: crd for crd in generate_crds()}

# Where Knative serves each kind, and the one version it stores.
KNATIVE_VERSIONS = {
    "Broker": ("eventing.knative.dev", ["v1"]),
    "Trigger": ("eventing.knative.dev", ["v1"]),
    "EventType": ("eventing.knative.dev", ["v1beta2", "v1beta3", "v1beta1"]),
    "EventPolicy": ("eventing.knative.dev", ["v1alpha1"]),
    "KafkaSink": ("eventing.knative.dev", ["v1alpha1"]),
    "Channel": ("messaging.knative.dev", ["v1"]),
    "Subscription": ("messaging.knative.dev", ["v1"]),
    "KafkaChannel": ("messaging.knative.dev", ["v1beta1"]),
    "InMemoryChannel": ("messaging.knative.dev", ["v1"]),
    "Sequence": ("flows.knative.dev", ["v1"]),
    "Parallel": ("flows.knative.dev", ["v1"]),
    "PingSource": ("sources.knative.dev", ["v1", "v1beta2"]),
    "ApiServerSource": ("sources.knative.dev", ["v1"]),
    "ContainerSource": ("sources.knative.dev", ["v1"]),
    "SinkBinding": ("sources.knative.dev", ["v1"]),
    "KafkaSource": ("sources.knative.dev", ["v1beta1", "v1"]),
    "IntegrationSource": ("sources.knative.dev", ["v1alpha1"]),
    "IntegrationSink": ("sinks.knative.dev", ["v1alpha1"]),
    "JobSink": ("sinks.knative.dev", ["v1alpha1"]),
    "EventTransform": ("eventing.knative.dev", ["v1alpha1"]),
    "RequestReply": ("eventing.knative.dev", ["v1alpha1"]),
}
TYPES = {"object", "array", "string", "integer", "number", "boolean"}
# Keywords the apiserver rejects in a CRD schema, or that the generator promises to drop.
FORBIDDEN = {"$ref", "$defs", "definitions", "$schema", "id", "anyOf", "oneOf", "allOf", "not", "title"}
FORBIDDEN |= {"default", "const", "examples", "patternProperties", "dependencies", "additionalItems"}


def test_committed_crds_are_what_the_models_generate() -> None:
    expected = {file_name(crd): render(crd) for crd in generate_crds()}
    committed = {p.name: p.read_text() for p in CRD_DIR.glob("*.yaml") if p.read_text().startswith(HEADER)}
    stale = sorted(
        name for name in set(expected) | set(committed) if expected.get(name) != committed.get(name)
    )
    assert not stale, f"{', '.join(stale)} differ from the models: run `make crds` and commit the result"


def test_every_kind_outside_the_core_group_has_a_crd_where_knative_serves_it() -> None:
    for kind, cls in KINDS.items():
        if "/" not in cls.API_VERSIONS[0]:
            assert kind not in CRDS  # ConfigMap is Kubernetes' own
            continue
        crd = CRDS[kind]
        group, versions = KNATIVE_VERSIONS[kind]
        assert crd["metadata"]["name"] == f"{cls.PLURAL}.{group}"
        assert crd["spec"]["group"] == group
        assert [v["name"] for v in crd["spec"]["versions"]] == versions
        assert [f"{group}/{v}" for v in versions] == list(cls.API_VERSIONS)
        assert [v["storage"] for v in crd["spec"]["versions"]].count(True) == 1
        assert all(v["served"] for v in crd["spec"]["versions"])
    assert set(CRDS) == set(KNATIVE_VERSIONS)


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_status_subresource_and_ready_reason_age_columns(kind: str) -> None:
    for version in CRDS[kind]["spec"]["versions"]:
        assert version["subresources"]["status"] == {}
        columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
        assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
        assert columns["Reason"] == '.status.conditions[?(@.type=="Ready")].reason'
        assert columns["Age"] == ".metadata.creationTimestamp"
        if KINDS[kind].ADDRESSABLE:
            assert columns["URL"] == ".status.address.url"


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_duck_typing_labels(kind: str) -> None:
    labels = CRDS[kind]["metadata"]["labels"]
    categories = CRDS[kind]["spec"]["names"]["categories"]
    assert categories[:2] == ["all", "knative"]
    assert (labels.get("duck.knative.dev/addressable") == "true") == KINDS[kind].ADDRESSABLE
    is_source = "sources" in categories
    assert (labels.get("eventing.knative.dev/source") == "true") == is_source
    assert (labels.get("duck.knative.dev/source") == "true") == is_source
    is_channel = "channel" in categories
    assert (labels.get("messaging.knative.dev/subscribable") == "true") == is_channel


def structural_errors(node: Any, path: str = "") -> list[str]:
    """The structural-schema rules kube-apiserver enforces on a CRD schema, as far as they are checkable here."""
    if not isinstance(node, dict):
        return [f"{path}: a schema must be a mapping"]
    errors = [f"{path}: {key} is not allowed" for key in sorted(FORBIDDEN & set(node))]
    type_ = node.get("type")
    preserve = node.get(PRESERVE)
    if PRESERVE in node and preserve is not True:
        errors.append(f"{path}: {PRESERVE} must be true or absent")
    if type_ is None and not preserve and not node.get("x-kubernetes-int-or-string"):
        errors.append(f"{path}: type is required")
    if type_ is not None and type_ not in TYPES:
        errors.append(f"{path}: unknown type {type_!r}")
    if not isinstance(node.get("nullable", False), bool):
        errors.append(f"{path}: nullable must be a boolean")
    if node.get("uniqueItems"):
        errors.append(f"{path}: uniqueItems cannot be true")
    if ("properties" in node or "additionalProperties" in node or "required" in node) and type_ != "object":
        errors.append(f"{path}: properties, additionalProperties and required need type: object")
    if "properties" in node and "additionalProperties" in node:
        errors.append(f"{path}: properties and additionalProperties are mutually exclusive")
    for name, sub in (node.get("properties") or {}).items():
        errors += structural_errors(sub, f"{path}.{name}")
    missing = set(node.get("required", ())) - set(node.get("properties") or ())
    if missing:
        errors.append(f"{path}: required names undeclared properties {sorted(missing)}")
    if "additionalProperties" in node:
        if not isinstance(node["additionalProperties"], dict):
            errors.append(f"{path}: additionalProperties must be a schema")
        else:
            errors += structural_errors(node["additionalProperties"], f"{path}.*")
    if type_ == "array":
        if not isinstance(node.get("items"), dict):
            errors.append(f"{path}: an array needs a single items schema")
        else:
            errors += structural_errors(node["items"], f"{path}[]")
    elif "items" in node:
        errors.append(f"{path}: items needs type: array")
    for value in node.get("enum", ()):
        if errors_for(value, {"type": type_} if type_ else {PRESERVE: True}):
            errors.append(f"{path}: enum value {value!r} is not a {type_}")
    return errors


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schemas_are_structural(kind: str) -> None:
    for version in CRDS[kind]["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        assert structural_errors(schema) == []
        # The apiserver owns metadata: a CRD may constrain only name and generateName, keventing none.
        assert schema["properties"]["metadata"] == {"type": "object"}
        assert schema["properties"]["status"][PRESERVE] is True
        assert schema["properties"]["spec"]["type"] == "object"


def test_the_checker_catches_what_the_apiserver_rejects() -> None:
    assert structural_errors({"type": "object", "properties": {"a": {}}}) == [".a: type is required"]
    assert structural_errors({"$ref": "#/$defs/X"})[0] == ": $ref is not allowed"
    assert structural_errors({"anyOf": [{"type": "string"}, {"type": "null"}]})
    assert structural_errors({"type": "object", "additionalProperties": False})
    assert structural_errors({"type": "array"})


def test_structural_inlines_refs_and_turns_optional_into_nullable() -> None:
    schema = {
        "$defs": {"Ref": {"title": "Ref", "type": "object", "properties": {"name": {"type": "string"}}}},
        "type": "object",
        "properties": {
            "ref": {"anyOf": [{"$ref": "#/$defs/Ref"}, {"type": "null"}], "default": None},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "anything": {"type": "object", "additionalProperties": True},
            "either": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        },
    }
    assert structural(schema)["properties"] == {
        "ref": {"type": "object", "nullable": True, "properties": {"name": {"type": "string"}}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "anything": {"type": "object", PRESERVE: True},
        "either": {PRESERVE: True},
    }


def errors_for(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Validate ``value`` as the apiserver would against a structural schema (types, required, enum, unknown fields)."""
    if value is None:
        return [] if schema.get("nullable") else [f"{path}: must not be null"]
    type_ = schema.get("type")
    if type_ is None or path == ".metadata":  # the apiserver validates metadata itself
        return []
    python_types: dict[str, tuple[type, ...]] = {
        "object": (dict,),
        "array": (list,),
        "string": (str,),
        "integer": (int,),
        "number": (int, float),
        "boolean": (bool,),
    }
    if not isinstance(value, python_types[type_]) or (
        type_ in ("integer", "number") and isinstance(value, bool)
    ):
        return [f"{path}: expected {type_}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    errors: list[str] = []
    if type_ == "array":
        for i, item in enumerate(value):
            errors += errors_for(item, schema["items"], f"{path}[{i}]")
    if type_ == "object":
        properties = schema.get("properties") or {}
        errors += [f"{path}.{name}: required" for name in schema.get("required", ()) if name not in value]
        for name, item in value.items():
            if name in properties:
                errors += errors_for(item, properties[name], f"{path}.{name}")
            elif "additionalProperties" in schema:
                errors += errors_for(item, schema["additionalProperties"], f"{path}.{name}")
            elif not schema.get(PRESERVE):
                errors.append(f"{path}.{name}: unknown field")  # pruned, or refused by strict validation
    return errors


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        for i, document in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(document, dict) and document.get("kind") in CRDS:
                documents.append((f"{path.relative_to(ROOT)}#{i}", document))
    return documents


EXAMPLES = example_documents()


def test_the_examples_cover_most_kinds() -> None:
    assert len({document["kind"] for _, document in EXAMPLES}) >= 10


@pytest.mark.parametrize(("where", "document"), EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_examples_validate_against_their_crd(where: str, document: dict[str, Any]) -> None:
    crd = CRDS[document["kind"]]
    group, version = document["apiVersion"].split("/")
    assert group == crd["spec"]["group"]
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]
    assert errors_for(document, schema) == []


def test_the_validator_reports_a_typo_and_a_missing_field() -> None:
    schema = CRDS["Trigger"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    document = {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": "t"}}
    document["spec"] = {"broker": "default", "subscriber": {"uri": "http://x"}, "filtre": {}}
    assert errors_for(document, schema) == [".spec.filtre: unknown field"]
    del document["spec"]["subscriber"]
    assert ".spec.subscriber: required" in errors_for(document, schema)
