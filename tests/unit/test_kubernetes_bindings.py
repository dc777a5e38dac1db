"""SinkBinding and ContainerSource on Kubernetes, the pure parts: subjects, pod-template patches, the
webhook's AdmissionReview answers and certificate checks, the ContainerSource's Deployment and SinkBinding."""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import orjson
import pytest
from helpers import container_source_doc, sink_binding_doc

from controller.kubernetes.bindings import (
    SUBJECT_KINDS,
    SubjectInvalid,
    binding_of,
    desired_env,
    pod_spec_patch,
    selector_matches,
)
from controller.kubernetes.deployments import container_source_deployment
from controller.kubernetes.webhook import (
    ServingCertificate,
    admission_response,
    certificate_fits,
    conversion_response,
    make_certificate,
    webhook_configuration,
)
from controller.reconciler import ControllerConfig, reconcile
from keventing.resources import ResourceKey, parse_resource
from keventing.resources.sources import BINDABLE_KINDS

SINK = "http://sink.example/"
OVERRIDES = '{"extensions":{"team":"a"}}'


def _binding_body(subject: dict, sink: str | None = SINK, namespace: str = "ns") -> dict:
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "SinkBinding",
        "metadata": {"name": "sb", "namespace": namespace},
        "spec": {
            "subject": subject,
            "sink": {"uri": SINK},
            "ceOverrides": {"extensions": {"team": "a"}},
        },
        "status": {"sinkUri": sink} if sink else {},
    }


def _deployment(name: str = "app", labels: dict | None = None, env: list | None = None) -> dict:
    main: dict = {"name": "main", "image": "x"}
    if env is not None:
        main["env"] = env
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "ns", "labels": labels or {}},
        "spec": {
            "template": {
                "spec": {
                    "containers": [main, {"name": "side", "image": "y"}],
                    "initContainers": [{"name": "i"}],
                }
            }
        },
    }


def _apply(obj: dict, patch: list[dict]) -> dict:
    """Apply the replace operations the patches are made of."""
    out = copy.deepcopy(obj)
    for op in patch:
        assert op["op"] == "replace"
        *parents, last = op["path"].strip("/").split("/")
        node = out
        for part in parents:
            node = node[part]
        node[last] = op["value"]
    return out


def _env_of(obj: dict) -> list[dict]:
    spec = obj["spec"]["template"]["spec"]
    return [
        {v["name"]: v["value"] for v in c.get("env", [])} for c in spec["containers"] + spec["initContainers"]
    ]


BY_LABEL = {"apiVersion": "apps/v1", "kind": "Deployment", "selector": {"matchLabels": {"bind": "me"}}}


def test_a_bound_deployment_gets_k_sink_and_k_ce_overrides_in_every_container() -> None:
    binding = binding_of(_binding_body(BY_LABEL))
    obj = _deployment(
        labels={"bind": "me"}, env=[{"name": "KEPT", "value": "1"}, {"name": "K_SINK", "value": "old"}]
    )
    bound = _apply(obj, pod_spec_patch(obj, binding.kind, desired_env(obj, [binding])))
    expected = {"K_SINK": SINK, "K_CE_OVERRIDES": OVERRIDES}
    assert _env_of(bound) == [{"KEPT": "1", **expected}, expected, expected]
    # Bound already: nothing to patch; unbinding leaves the containers' own variables.
    assert pod_spec_patch(bound, binding.kind, binding.env) == []
    unbound = _apply(bound, pod_spec_patch(bound, binding.kind, None))
    assert _env_of(unbound) == [{"KEPT": "1"}, {}, {}]
    assert "env" not in unbound["spec"]["template"]["spec"]["containers"][1]


def test_a_binding_matches_its_subject_by_name_or_selector_in_its_namespace_only() -> None:
    by_label = binding_of(_binding_body(BY_LABEL))
    by_name = binding_of(_binding_body({"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"}))
    assert by_label.matches(_deployment(labels={"bind": "me"}))
    assert not by_label.matches(_deployment(labels={"bind": "you"}))
    assert by_name.matches(_deployment("app")) and not by_name.matches(_deployment("other"))
    elsewhere = _deployment("app")
    elsewhere["metadata"]["namespace"] = "other"
    assert not by_name.matches(elsewhere)
    job = {**_deployment("app"), "kind": "Job"}
    assert not by_name.matches(job)


def test_a_binding_without_a_resolved_sink_binds_nothing() -> None:
    binding = binding_of(_binding_body(BY_LABEL, sink=None))
    assert desired_env(_deployment(labels={"bind": "me"}), [binding]) is None


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}, {"tier": "web"}, True),
        (
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]},
            {"tier": "web"},
            False,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {}, True),
        (
            {"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]},
            {"a": "1"},
            False,
        ),
    ],
)
def test_label_selectors_follow_kubernetes(selector: dict, labels: dict, matches: bool) -> None:
    assert selector_matches(selector, labels) is matches


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ({"apiVersion": "v1", "kind": "Service", "name": "x"}, "cannot be bound"),
        ({"apiVersion": "apps/v1", "kind": "Deployment"}, "exactly one of name, selector"),
        ({"apiVersion": "batch/v1", "kind": "Deployment", "name": "x"}, "a Deployment is apps/v1"),
    ],
)
def test_a_subject_keventing_cannot_bind_says_why(subject: dict, message: str) -> None:
    with pytest.raises(SubjectInvalid, match=message):
        binding_of(_binding_body(subject))


def test_a_cron_job_is_bound_in_its_job_template() -> None:
    binding = binding_of(_binding_body({"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly"}))
    cron = {
        "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": "ns"},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}},
    }
    patch = pod_spec_patch(cron, binding.kind, desired_env(cron, [binding]))
    assert [op["path"] for op in patch] == ["/spec/jobTemplate/spec/template/spec/containers"]


def test_the_webhook_patches_an_admitted_subject_and_allows_everything_else() -> None:
    binding = binding_of(_binding_body(BY_LABEL))
    obj = _deployment(labels={"bind": "me"})
    del obj["metadata"]["namespace"]  # admitted objects may leave it to the request
    review = {"request": {"uid": "u1", "operation": "CREATE", "namespace": "ns", "object": obj}}
    response = admission_response(review, [binding])["response"]
    assert (response["uid"], response["allowed"], response["patchType"]) == ("u1", True, "JSONPatch")
    patched = _apply(obj, orjson.loads(base64.b64decode(response["patch"])))
    assert _env_of(patched)[1] == {"K_SINK": SINK, "K_CE_OVERRIDES": OVERRIDES}

    other = {"request": {"uid": "u2", "operation": "CREATE", "namespace": "ns", "object": _deployment()}}
    assert admission_response(other, [binding])["response"] == {"uid": "u2", "allowed": True}


def test_the_webhook_configuration_names_every_subject_kind_and_carries_the_ca() -> None:
    config = webhook_configuration("cfg", "Q0E=", url="https://127.0.0.1:9443/", service=None)
    (webhook,) = config["webhooks"]
    assert webhook["clientConfig"] == {"caBundle": "Q0E=", "url": "https://127.0.0.1:9443/sinkbindings"}
    resources = {(r["apiGroups"][0], p) for r in webhook["rules"] for p in r["resources"]}
    assert resources == {
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
        ("", "pods"),
    }
    in_cluster = webhook_configuration("cfg", "Q0E=", url=None, service=("knative-eventing", "hook", 443))
    assert in_cluster["webhooks"][0]["clientConfig"]["service"]["name"] == "hook"


def test_a_container_source_on_kubernetes_generates_its_sink_binding_and_no_local_process() -> None:
    document = container_source_doc("c", "ns", {"uri": SINK}, [], image="example/heartbeats")
    document["metadata"]["uid"] = "uid-c"
    document["spec"]["ceOverrides"] = {"extensions": {"team": "a"}}
    desired = reconcile([parse_resource(document)], ControllerConfig(kubernetes=True))
    status = desired.statuses[ResourceKey("ContainerSource", "ns", "c")]
    assert status.ready and status.sinkUri == SINK
    assert "ContainerSource/ns/c" not in desired.contract
    binding = desired.children[ResourceKey("SinkBinding", "ns", "c-sinkbinding")]
    assert binding.spec.subject is not None
    assert (binding.spec.subject.kind, binding.spec.subject.name) == ("Deployment", "c-deployment")
    assert binding.ce_overrides == {"team": "a"}
    assert [(o.kind, o.uid, o.controller) for o in binding.metadata.ownerReferences] == [
        ("ContainerSource", "uid-c", True)
    ]
    assert desired.statuses[binding.key].ready


def test_a_container_source_deployment_runs_its_template_and_is_owned_by_it() -> None:
    document = container_source_doc("c", "ns", {"uri": SINK}, [], image="example/heartbeats")
    document["metadata"]["uid"] = "uid-c"
    deployment = container_source_deployment(document)
    assert deployment["metadata"]["name"] == "c-deployment"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "uid-c"
    template = deployment["spec"]["template"]
    assert template["spec"] == document["spec"]["template"]["spec"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()


def test_the_webhook_knows_every_kind_a_sink_binding_may_name() -> None:
    assert {kind: k.api_version for kind, k in SUBJECT_KINDS.items()} == BINDABLE_KINDS


def test_a_sink_binding_naming_a_kind_without_a_pod_template_is_not_ready_with_why() -> None:
    document = sink_binding_doc(
        "sb", "ns", {"uri": SINK}, subject={"apiVersion": "v1", "kind": "Service", "name": "x"}
    )
    desired = reconcile([parse_resource(document, semantics=False)], ControllerConfig(kubernetes=True))
    ready = desired.statuses[ResourceKey("SinkBinding", "ns", "sb")].condition("Ready")
    assert ready is not None and ready.status == "False"
    assert "spec.subject.kind" in (ready.message or "") and "Deployment" in (ready.message or "")


def test_a_shared_webhook_certificate_fits_only_the_names_it_was_made_for(tmp_path: Path) -> None:
    names = ["keventing-webhook.keventing.svc", "localhost"]
    certificate = make_certificate(tmp_path / "made", names, ["127.0.0.1"])
    assert certificate_fits(certificate, names, ["127.0.0.1"])
    # A Service renamed or moved needs a new certificate; so does one signed by another CA.
    assert not certificate_fits(certificate, ["keventing-webhook.other.svc"], ["127.0.0.1"])
    assert not certificate_fits(certificate, names, ["10.0.0.1"])
    other = make_certificate(tmp_path / "other", names, ["127.0.0.1"])
    assert not certificate_fits(
        ServingCertificate(other.ca_cert, certificate.cert, certificate.key), names, []
    )


def test_the_conversion_webhook_answers_a_conversion_review_and_fails_what_it_cannot_convert() -> None:
    event_type = {
        "apiVersion": "eventing.knative.dev/v1beta2",
        "kind": "EventType",
        "metadata": {"name": "orders", "namespace": "ns"},
        "spec": {"type": "order.created"},
    }
    review = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {
            "uid": "u1",
            "desiredAPIVersion": "eventing.knative.dev/v1beta3",
            "objects": [event_type],
        },
    }
    response = conversion_response(review)["response"]
    assert response["uid"] == "u1" and response["result"] == {"status": "Success"}
    (converted,) = response["convertedObjects"]
    assert converted["apiVersion"] == "eventing.knative.dev/v1beta3"
    assert converted["spec"]["attributes"] == [{"name": "type", "value": "order.created", "required": True}]
    review["request"]["objects"] = [{**event_type, "kind": "Broker"}]
    failed = conversion_response(review)["response"]
    assert failed["result"]["status"] == "Failure" and "Broker" in failed["result"]["message"]
    assert "convertedObjects" not in failed
