"""JobSink on a real kube-apiserver: applied with kubectl it becomes Ready with its address; each event sent to
it becomes one Job (Knative's name, labels and owner) with the event in a Secret mounted at
/etc/jobsink-event; the same event sent again makes no second Job; deleting the JobSink garbage-collects its
Jobs and Secrets. The dispatcher creates them with the chart's RBAC. No kubelet runs here: the test looks at
the API objects, not at pods running."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from kube_stack import DATA_PLANE, running_stack, send_event, wait_positioned
from kubectl import Kubectl

from dispatcher.jobsink import event_id_label, job_name
from kev.stack import Stack
from keventing import naming

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(600)]

SINK = "job-sink-logger"
NAME_LABEL = "sinks.knative.dev/job-sink-name"
ID_LABEL = "sinks.knative.dev/job-sink-id"


@pytest.fixture(scope="module")
def job_stack(
    operator_env: dict[str, str], kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(kafka, tmp_path_factory.mktemp("jobsink-logs"), operator_env, DATA_PLANE) as stack:
        yield stack


def _job_sink(namespace: str) -> dict[str, Any]:
    """Knative's documented JobSink (docs/eventing/sinks/job-sink.md), with a label of its own on the Job."""
    return {
        "apiVersion": "sinks.knative.dev/v1alpha1",
        "kind": "JobSink",
        "metadata": {"name": SINK, "namespace": namespace},
        "spec": {
            "job": {
                "metadata": {"labels": {"team": "billing"}},
                "spec": {
                    "completions": 1,
                    "parallelism": 1,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "main",
                                    "image": "docker.io/library/bash:5",
                                    "command": ["cat"],
                                    "args": ["/etc/jobsink-event/event"],
                                }  # fmt: skip
                            ],
                        }
                    },
                },
            }
        },
    }


def _owned(kubectl: Kubectl, kind: str, namespace: str) -> list[dict[str, Any]]:
    return [
        o for o in kubectl.list(kind, namespace) if o["metadata"].get("labels", {}).get(NAME_LABEL) == SINK
    ]


def _wait_for(
    kubectl: Kubectl, kind: str, namespace: str, name: str, timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (found := kubectl.get(kind, name, namespace)) is None:
        assert time.monotonic() < deadline, f"{kind} {name} did not appear in {timeout} s"
        time.sleep(0.3)
    return found


def test_each_event_becomes_one_job_with_the_event_mounted_and_a_redelivery_makes_no_second_job(
    job_stack: Stack, kubectl: Kubectl, namespace: str, kafka: str
) -> None:
    kubectl.apply(_job_sink(namespace))
    sink = kubectl.wait_ready("jobsink", SINK, namespace)
    url = sink["status"]["address"]["url"]
    assert url == f"{job_stack.ingress_url}/jobsinks/{namespace}/{SINK}"
    assert sink["status"]["job"] == {"selector": f"{NAME_LABEL}={SINK}"}
    topic = naming.job_sink_topic(namespace, SINK)
    wait_positioned(kafka, topic, topic)

    first = send_event(job_stack, url, "dev.test.order", event_id=f"order-{uuid.uuid4().hex[:8]}")
    label = event_id_label("/kube-test", first)
    name = job_name(SINK, label)
    job = _wait_for(kubectl, "job", namespace, name)

    assert job["metadata"]["labels"] == {"team": "billing", ID_LABEL: label, NAME_LABEL: SINK}
    [owner] = job["metadata"]["ownerReferences"]
    assert (owner["apiVersion"], owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "sinks.knative.dev/v1alpha1", "JobSink", SINK, sink["metadata"]["uid"], True
    )  # fmt: skip
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert {"name": "jobsink-event", "mountPath": "/etc/jobsink-event", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert {"name": "KNATIVE_EXECUTION_MODE", "value": "batch"} in container["env"]
    assert {"name": "jobsink-event", "secret": {"secretName": name, "defaultMode": 420}} in pod["volumes"]

    secret = kubectl.get("secret", name, namespace)
    assert secret is not None and secret["immutable"] is True
    assert secret["metadata"]["labels"] == {ID_LABEL: label, NAME_LABEL: SINK}
    assert [o["uid"] for o in secret["metadata"]["ownerReferences"]] == [sink["metadata"]["uid"]]
    assert set(secret["data"]) == {"event"}
    assert orjson.loads(base64.b64decode(secret["data"]["event"])) == {
        "specversion": "1.0", "id": first, "source": "/kube-test", "type": "dev.test.order",
        "datacontenttype": "application/json", "data": {"hello": "kubernetes"},
    }  # fmt: skip

    # The same event again, then another: the sink makes its Jobs one event at a time, so once the other's
    # Job exists the repeated event has been handled, and it made no Job of its own.
    send_event(job_stack, url, "dev.test.order", event_id=first)
    second = send_event(job_stack, url, "dev.test.order")
    _wait_for(kubectl, "job", namespace, job_name(SINK, event_id_label("/kube-test", second)))
    jobs = _owned(kubectl, "jobs", namespace)
    assert sorted(j["metadata"]["labels"][ID_LABEL] for j in jobs) == sorted(
        [label, event_id_label("/kube-test", second)]
    )
    assert len(_owned(kubectl, "secrets", namespace)) == 2

    # Deleting the JobSink deletes what it owns (kube-controller-manager's garbage collector).
    kubectl.run("delete", "jobsink", SINK, "-n", namespace, "--wait=true", "--timeout=60s")
    deadline = time.monotonic() + 90
    while _owned(kubectl, "jobs", namespace) or _owned(kubectl, "secrets", namespace):
        assert time.monotonic() < deadline, "the JobSink's Jobs and Secrets were not garbage-collected"
        time.sleep(0.5)
