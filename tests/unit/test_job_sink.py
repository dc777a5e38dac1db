"""JobSink: what is refused, its topic, ingress and job egress (Kubernetes mode), KubernetesOnly (local mode),
and the Secret and Job the dispatcher makes of each event (names, labels, mount, environment, owner)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
import yaml
from knative_corpus import CORPUS

from controller.reconciler import ControllerConfig, reconcile
from dispatcher.jobsink import JobPost, child_name, event_id_label, event_job, event_secret, job_name
from dispatcher.transport import Response
from keventing import events
from keventing.contract import JobRun
from keventing.kubeapi import KubeApi
from keventing.naming import is_dns_subdomain
from keventing.resources import ResourceInvalid, ResourceKey, parse_resource
from keventing.resources.jobsinks import JobSink

KEY = ResourceKey("JobSink", "ns", "job-sink-logger")


def _knative_doc(name: str = "job-sink-1.yaml") -> dict[str, Any]:
    document = yaml.safe_load((CORPUS / name).read_text())
    document["metadata"]["namespace"] = "ns"
    return document


def _sink(document: dict[str, Any] | None = None) -> JobSink:
    resource = parse_resource(document or _knative_doc())
    assert isinstance(resource, JobSink)
    resource.metadata.uid = "0b9a6c1e-uid"
    return resource


def _event(source: str = "/orders", event_id: str = "e-1", data: bytes = b'{"order": 7}') -> events.Event:
    headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": source, "ce-type": "dev.test.order",
               "content-type": "application/json"}  # fmt: skip
    return events.from_http(headers, data)


def _run(sink: JobSink) -> JobRun:
    return JobRun(api_version=sink.apiVersion, uid="0b9a6c1e-uid", template=sink.job)


def _pod(document: dict[str, Any]) -> dict[str, Any]:
    return document["spec"]["job"]["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda d: d["spec"].pop("job"), "spec.job", "required: the batch/v1 Job to run for each event"),
        (lambda d: d["spec"]["job"].pop("spec"), "spec.job.spec", "required"),
        (lambda d: _pod(d).pop("containers"), "spec.job.spec.template.spec.containers", "at least one"),
        (lambda d: _pod(d).update(containers=[]), "spec.job.spec.template.spec.containers", "at least one"),
        (
            lambda d: _pod(d)["containers"][0].pop("image"),
            "spec.job.spec.template.spec.containers[0].image",
            "required",
        ),  # fmt: skip
        (
            lambda d: _pod(d).pop("restartPolicy"),
            "spec.job.spec.template.spec.restartPolicy",
            "required: a Job's pods must have restartPolicy Never or OnFailure",
        ),  # fmt: skip
        (
            lambda d: _pod(d).update(restartPolicy="Always"),
            "spec.job.spec.template.spec.restartPolicy",
            "'Always' is not allowed",
        ),  # fmt: skip
        (lambda d: d["spec"]["job"].update(kind="CronJob"), "spec.job.kind", "must be 'Job'"),
        (
            lambda d: d["spec"]["job"]["spec"].update(template=[]),
            "spec.job.spec.template",
            "must be a mapping",
        ),
    ],
)
def test_a_job_sink_whose_template_cannot_make_a_job_is_refused_naming_the_field(
    change: Any, field: str, message: str
) -> None:
    document = _knative_doc()
    change(document)
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(document)
    assert err.value.field == field and message in err.value.reason


def test_knatives_documented_job_sinks_are_accepted() -> None:
    for name in ("job-sink-1.yaml", "job-sink-5.yaml", "job-sink-6.yaml", "job-sink-7.yaml"):
        sink = _sink(_knative_doc(name))
        assert sink.KUBERNETES_ONLY and sink.warnings() == []


def test_a_name_in_the_job_template_is_said_to_be_unused() -> None:
    document = _knative_doc()
    document["spec"]["job"]["metadata"] = {"name": "fixed"}
    assert _sink(document).warnings() == [
        "spec.job.metadata.name is not used: each event's Job is named after the JobSink and the event"
    ]


def test_in_local_mode_a_job_sink_is_not_ready_because_it_needs_kubernetes() -> None:
    desired = reconcile([_sink()], ControllerConfig())
    status = desired.statuses[KEY]
    ready = status.condition("Ready")
    assert ready is not None and ready.status == "False" and ready.reason == "KubernetesOnly"
    assert ready.message is not None and "JobSink needs Kubernetes mode" in ready.message
    assert status.address is None
    assert desired.topics == {} and desired.contract == {}


def test_in_kubernetes_mode_a_job_sink_gets_a_topic_an_address_and_an_ordered_job_egress() -> None:
    config = ControllerConfig(kubernetes=True)
    sink = _sink()
    desired = reconcile([sink], config)
    status = desired.statuses[KEY]
    assert status.ready and status.address is not None
    assert status.address.url == "http://localhost:8080/jobsinks/ns/job-sink-logger"
    assert status.model_dump()["job"] == {"selector": "sinks.knative.dev/job-sink-name=job-sink-logger"}
    topic = "knative-jobsink.ns.job-sink-logger"
    assert set(desired.topics) == {topic} and desired.topics[topic].partitions == 1
    ingress = desired.contract["JobSink/ns/job-sink-logger"].ingress
    assert ingress is not None and ingress.topic == topic and ingress.path == "/jobsinks/ns/job-sink-logger"
    egress = desired.contract["JobSink/ns/job-sink-logger/job"].egress
    assert egress is not None and egress.topics == (topic,) and egress.consumer_group == topic
    assert egress.destination == "job:ns/job-sink-logger" and egress.delivery_order == "ordered"
    assert egress.delivery == config.default_delivery and egress.delivery.retry > 0
    assert egress.reply.strategy == "discard" and not egress.prefer_reply
    assert egress.job == JobRun(
        api_version="sinks.knative.dev/v1alpha1", uid="0b9a6c1e-uid", template=sink.job
    )


def test_a_trigger_may_deliver_to_a_job_sink_by_ref() -> None:
    trigger = parse_resource({
        "apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": "t", "namespace": "ns"},
        "spec": {"broker": "default", "subscriber": {"ref": {"apiVersion": "sinks.knative.dev/v1alpha1",
                                                             "kind": "JobSink", "name": "job-sink-logger"}}},
    })  # fmt: skip
    broker = parse_resource(
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "default", "namespace": "ns"},
        }
    )
    desired = reconcile([_sink(), broker, trigger], ControllerConfig(kubernetes=True))
    egress = desired.contract["Trigger/ns/t"].egress
    assert egress is not None and egress.destination == "http://localhost:8080/jobsinks/ns/job-sink-logger"


def test_the_id_label_is_the_same_for_the_same_source_and_id_and_differs_otherwise() -> None:
    label = event_id_label("/orders", "e-1")
    assert label == event_id_label("/orders", "e-1")
    assert len(label) == 32 and label.isalnum() and label == label.lower()
    assert len({label, event_id_label("/orders", "e-2"), event_id_label("/other", "e-1")}) == 3


def test_job_names_are_the_sink_and_the_hash_and_fit_kubernetes_limits() -> None:
    label = event_id_label("/orders", "e-1")
    assert job_name("job-sink-logger", label) == "job-sink-logger" + label
    long_a, long_b = "a" * 40 + "-x", "a" * 40 + "-y"
    names = {job_name(long_a, label), job_name(long_b, label)}
    assert len(names) == 2
    for name in names:
        assert len(name) <= 63 and is_dns_subdomain(name) and name.startswith("a" * 31)
    # kmeta.ChildName's other branch: a short suffix after a long parent keeps the suffix.
    assert child_name("p" * 70, "-x").endswith("-x") and len(child_name("p" * 70, "-x")) == 63


def test_the_secret_holds_exactly_the_event_in_the_json_format_with_knatives_labels() -> None:
    sink, event = _sink(), _event()
    secret = event_secret(_run(sink), "ns", sink.name, event)
    label = event_id_label("/orders", "e-1")
    assert secret["metadata"]["name"] == "job-sink-logger" + label
    assert secret["metadata"]["namespace"] == "ns"
    assert secret["metadata"]["labels"] == {
        "sinks.knative.dev/job-sink-id": label,
        "sinks.knative.dev/job-sink-name": "job-sink-logger",
    }
    assert secret["metadata"]["ownerReferences"] == [
        {"apiVersion": "sinks.knative.dev/v1alpha1", "kind": "JobSink", "name": "job-sink-logger",
         "uid": "0b9a6c1e-uid", "controller": True, "blockOwnerDeletion": False}
    ]  # fmt: skip
    assert secret["immutable"] is True and secret["type"] == "Opaque"
    assert orjson.loads(secret["stringData"]["event"]) == {
        "specversion": "1.0", "id": "e-1", "source": "/orders", "type": "dev.test.order",
        "datacontenttype": "application/json", "data": {"order": 7},
    }  # fmt: skip


def test_the_job_is_the_template_with_the_event_mounted_labels_owner_and_execution_mode() -> None:
    sink = _sink(_knative_doc("job-sink-6.yaml"))
    before = copy.deepcopy(sink.job)
    job = event_job(_run(sink), "ns", sink.name, _event())
    name = "job-sink-success" + event_id_label("/orders", "e-1")
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["metadata"]["name"] == name and job["metadata"]["namespace"] == "ns"
    assert job["metadata"]["labels"] == {
        "my-label": "my-value",
        "sinks.knative.dev/job-sink-id": event_id_label("/orders", "e-1"),
        "sinks.knative.dev/job-sink-name": "job-sink-success",
    }
    assert [o["kind"] for o in job["metadata"]["ownerReferences"]] == ["JobSink"]
    assert (
        job["spec"]["completions"] == 12
        and job["spec"]["podFailurePolicy"] == before["spec"]["podFailurePolicy"]
    )
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["volumeMounts"] == [
        {"name": "jobsink-event", "readOnly": True, "mountPath": "/etc/jobsink-event"}
    ]
    assert container["env"] == [{"name": "KNATIVE_EXECUTION_MODE", "value": "batch"}]
    assert pod["volumes"] == [{"name": "jobsink-event", "secret": {"secretName": name}}]
    assert sink.job == before  # the template itself is left as it was


def test_a_template_that_mounts_the_event_itself_keeps_its_mount_path_and_env() -> None:
    document = _knative_doc("job-sink-5.yaml")
    _pod(document)["containers"][0]["env"] = [{"name": "KNATIVE_EXECUTION_MODE", "value": "custom"}]
    _pod(document)["initContainers"] = [{"name": "init", "image": "busybox"}]
    sink = _sink(document)
    pod = event_job(_run(sink), "ns", sink.name, _event())["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["volumeMounts"] == [
        {"name": "jobsink-event", "mountPath": "/etc/custom-path", "readOnly": True}
    ]
    assert container["env"] == [{"name": "KNATIVE_EXECUTION_MODE", "value": "custom"}]
    assert pod["initContainers"][0]["env"] == [{"name": "KNATIVE_EXECUTION_MODE", "value": "batch"}]
    assert "volumeMounts" not in pod["initContainers"][0]
    [volume] = pod["volumes"]
    assert volume["secret"]["secretName"] == sink.name + event_id_label("/orders", "e-1")


class Recording:
    def __init__(self) -> None:
        self.urls: list[str] = []

    async def post(self, url: str, headers: Mapping[str, str], body: bytes, timeout: float | None,
                   ca_certs: str | None = None, audience: str | None = None) -> Response:  # fmt: skip
        self.urls.append(url)
        return Response(204)


async def test_job_post_hands_every_other_url_to_the_transport_and_refuses_a_non_event() -> None:
    inner = Recording()
    post = JobPost(inner, _run(_sink()), KubeApi())
    answer = await post.post("http://dead-letter.example/", {"ce-id": "x"}, b"", 1.0)
    assert answer.status == 204 and inner.urls == ["http://dead-letter.example/"]
    refused = await post.post("job:ns/job-sink-logger", {"content-type": "text/plain"}, b"hello", 1.0)
    assert refused.status == 400 and refused.body.startswith(b"not a CloudEvent")
    assert inner.urls == ["http://dead-letter.example/"]
