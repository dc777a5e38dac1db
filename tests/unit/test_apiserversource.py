"""ApiServerSource's pure parts: the model, the controller phase, and the events a watch change becomes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from controller.resolver import Resolver
from controller.sources import reconcile_apiserver_source
from keventing.contract import ApiServerWatch, WatchedResource
from keventing.resources import ApiServerSource, ResourceInvalid, parse_resource
from keventing.resources.sources import LabelSelector
from keventing.sourcereports import ReportedCondition, SourceReport
from sources.apiserver import apiserver_event, changes_between, guess_plural, owned_as_wanted, self_link


def _doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "ApiServerSource",
        "metadata": {"name": "watch", "namespace": "ns", "generation": 2},
        "spec": {
            "resources": [
                {"apiVersion": "v1", "kind": "ConfigMap", "selector": {"matchLabels": {"app": "x"}}}
            ],
            "sink": {"uri": "http://sink.example/"},
            **spec,
        },
    }


def _source(**spec: Any) -> ApiServerSource:
    source = parse_resource(_doc(**spec))
    assert isinstance(source, ApiServerSource)
    return source


def _configmap() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "ns", "uid": "u1", "resourceVersion": "7"},
        "data": {"k": "v"},
    }


# ------------------------------------------------------------------------------------------ model


def test_mode_defaults_to_reference_and_the_account_to_default() -> None:
    source = _source()
    assert source.mode == "Reference"
    assert source.service_account == "default"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"mode": "Ref"}, "spec.mode"),
        ({"resources": []}, "spec.resources"),
        ({"resources": [{"apiVersion": "a/b/c", "kind": "X"}]}, "spec.resources[0].apiVersion"),
        ({"resources": [{"apiVersion": "v1", "kind": " "}]}, "spec.resources[0].kind"),
        ({"owner": {"apiVersion": "apps/v1", "kind": ""}}, "spec.owner.kind"),
        (
            {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
            "spec.namespaceSelector",
        ),
    ],
)
def test_invalid_specs_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(_doc(**spec))
    assert err.value.field.startswith(field)


def test_filters_are_validated_with_the_trigger_dialects() -> None:
    with pytest.raises(ResourceInvalid, match="unknown"):
        parse_resource(_doc(filters=[{"unknown": {"type": "x"}}]))
    assert _source(filters=[{"prefix": {"type": "dev.knative.apiserver."}}]).spec.filters


def test_label_selector_in_the_api_servers_query_syntax() -> None:
    selector = LabelSelector.model_validate(
        {
            "matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["web", "db"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "owned", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    )
    assert selector.to_query() == "a=1,b=2,tier in (web,db),env notin (dev),owned,!legacy"


# ----------------------------------------------------------------------------------------- phase


def _report(generation: int, permissions: str, message: str = "") -> SourceReport:
    return SourceReport(
        id="ApiServerSource/ns/watch",
        generation=generation,
        conditions=(
            ReportedCondition(type="SufficientPermissions", status=permissions, reason="R", message=message),
            ReportedCondition(type="Deployed", status="True"),
        ),
        namespaces=("ns",),
        event_source="https://apiserver:6443",
    )


def test_the_contract_entry_says_what_to_watch_and_as_whom() -> None:
    source = _source(
        serviceAccountName="watcher",
        mode="Resource",
        owner={"apiVersion": "apps/v1", "kind": "Deployment"},
        namespaceSelector={},
    )
    status, entry = reconcile_apiserver_source(source, Resolver({}, {}), None)
    assert status.sinkUri == "http://sink.example/"
    assert entry is not None and entry.apiserver is not None
    watch = entry.apiserver
    assert watch.resources == (WatchedResource(api_version="v1", kind="ConfigMap", label_selector="app=x"),)
    assert (watch.mode, watch.service_account, watch.generation) == ("Resource", "watcher", 2)
    assert watch.namespace_selector == ""  # {}: every namespace
    assert (watch.owner_api_version, watch.owner_kind) == ("apps/v1", "Deployment")


def test_without_a_report_the_source_waits_for_the_runner() -> None:
    status, _ = reconcile_apiserver_source(_source(), Resolver({}, {}), None)
    ready = status.condition("Ready")
    assert ready is not None and ready.status == "Unknown"
    assert "sources runner" in (ready.message or "")


def test_a_report_of_missing_permissions_makes_the_source_not_ready() -> None:
    message = 'User system:serviceaccount:ns:default cannot list resource "configmaps" in API group ""'
    status, entry = reconcile_apiserver_source(_source(), Resolver({}, {}), _report(2, "False", message))
    ready = status.condition("Ready")
    assert ready is not None and (ready.status, ready.message) == ("False", message)
    assert entry is not None  # the runner keeps checking, so the entry stays in the contract


def test_a_good_report_makes_it_ready_with_knatives_attributes() -> None:
    status, _ = reconcile_apiserver_source(_source(), Resolver({}, {}), _report(2, "True"))
    assert status.ready
    assert [c.type for c in status.conditions] == [
        "Ready",
        "SinkProvided",
        "SufficientPermissions",
        "Deployed",
    ]
    assert status.namespaces == ["ns"]
    assert {(a.type, a.source) for a in status.ceAttributes or []} == {
        (f"dev.knative.apiserver.ref.{verb}", "https://apiserver:6443")
        for verb in ("add", "update", "delete")
    }


def test_a_report_about_an_older_generation_is_not_trusted() -> None:
    status, _ = reconcile_apiserver_source(_source(), Resolver({}, {}), _report(1, "True"))
    assert not status.ready


# ---------------------------------------------------------------------------------------- events


def _watch(mode: str = "Reference", **fields: Any) -> ApiServerWatch:
    return ApiServerWatch(
        resources=(WatchedResource(api_version="v1", kind="ConfigMap"),), mode=mode, **fields
    )  # type: ignore[arg-type]


def test_a_reference_event_carries_the_object_reference() -> None:
    event = apiserver_event(
        _watch(), {"team": "a", "type": "x"}, "https://api:6443", "add", _configmap(), "id-1"
    )
    assert event.attributes == {
        "specversion": "1.0",
        "id": "id-1",
        "source": "https://api:6443",
        "type": "dev.knative.apiserver.ref.add",
        "subject": "/apis/v1/namespaces/ns/configmaps/settings",
        "datacontenttype": "application/json",
        "kind": "ConfigMap",
        "name": "settings",
        "namespace": "ns",
        "team": "a",  # an override may add an extension, never replace the type
    }
    assert orjson.loads(event.data or b"") == {
        "kind": "ConfigMap",
        "namespace": "ns",
        "name": "settings",
        "apiVersion": "v1",
    }


def test_a_resource_event_carries_the_whole_object() -> None:
    event = apiserver_event(_watch("Resource"), {}, "https://api:6443", "delete", _configmap())
    assert event.type == "dev.knative.apiserver.resource.delete"
    assert orjson.loads(event.data or b"") == _configmap()
    assert event.id  # a fresh uuid


def test_self_links_as_knative_guesses_them() -> None:
    assert guess_plural("Policy") == "policies"
    assert guess_plural("Ingress") == "ingresses"
    assert self_link("apps/v1", "Deployment", "ns", "web") == "/apis/apps/v1/namespaces/ns/deployments/web"


def test_the_owner_filter_wants_a_controller_of_that_kind() -> None:
    watch = _watch(owner_api_version="apps/v1", owner_kind="ReplicaSet")
    pod: dict[str, Any] = {"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet"}]}}
    assert not owned_as_wanted(watch, pod)  # an owner, but not the controller
    pod["metadata"]["ownerReferences"][0]["controller"] = True
    assert owned_as_wanted(watch, pod)
    assert not owned_as_wanted(_watch(owner_kind="Deployment"), pod)
    assert owned_as_wanted(_watch(), {"metadata": {}})


def test_a_relist_after_an_expired_watch_sends_what_changed_meanwhile() -> None:
    kept, changed, gone, new = ({"metadata": {"name": n}} for n in ("kept", "changed", "gone", "new"))
    before = {"1": ("10", kept), "2": ("11", changed), "3": ("12", gone)}
    now = {"1": ("10", kept), "2": ("15", changed), "4": ("16", new)}
    assert changes_between(before, now) == [("update", changed), ("add", new), ("delete", gone)]
