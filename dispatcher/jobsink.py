"""The ``job:`` destination: a JobSink's events, each made into a Kubernetes Job instead of POSTed.

``job:<namespace>/<name>`` (made by the controller, with the JobSink's Job template in the egress's
:class:`~keventing.contract.JobRun`). :class:`JobPost` sits in front of the HTTP transport: a ``job:`` URL
never reaches the network, every other URL (a dead-letter sink) goes on unchanged. For each event, as
Knative's job-sink does:

- the event's id label is a hash of its source and id, and the Job's name the JobSink's name and that
  hash (Kubernetes' 63 characters at most), so that the same event sent again finds its Job: a second
  creation answers AlreadyExists, which is a success, and no second Job is made;
- a Secret of that name holds the event in the JSON event format (key ``event``), immutable;
- the Job is the template with that name, the name and id labels, the Secret mounted read-only at
  ``/etc/jobsink-event`` in every container (unless the template mounts a volume ``jobsink-event`` itself),
  and ``KNATIVE_EXECUTION_MODE=batch`` in every container's environment (unless set);
- both are owned by the JobSink (its controller), so the garbage collector deletes them with it.

It answers 202 once both exist. A creation the API server refuses is a failed attempt with the API server's
status (403 as 503: a missing RBAC rule is fixed without changing the event); no answer is a TransportError.

Where Knative differs: its id label is the MD5 digest's raw bytes passed through a DNS-name filter (most of
the digest is dropped), and its owner references name the kind ``jobsinks``; keventing uses the digest in
hex and the kind ``JobSink``, which the garbage collector resolves.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

import aiohttp
import orjson

from dispatcher.transport import Post, Response, TransportError
from keventing import events
from keventing.contract import JobRun
from keventing.kubeapi import KubeApi, KubeConfigUnavailable
from keventing.resources.jobsinks import (
    EVENT_KEY,
    EVENT_MOUNT_PATH,
    EVENT_VOLUME,
    EXECUTION_MODE_BATCH,
    EXECUTION_MODE_ENV,
    JOB_SINK_ID_LABEL,
    JOB_SINK_NAME_LABEL,
)

if TYPE_CHECKING:
    from kubernetes_asyncio import client as k8s

log = logging.getLogger("keventing.jobsink")

# Kubernetes' longest label-like name (a Job's name is its pods' job-name label), and kmeta's hash budget.
LONGEST_NAME = 63
_MD5_HEX = 32
_HEAD = LONGEST_NAME - _MD5_HEX


def event_id_label(source: str, event_id: str) -> str:
    """The id label of an event's Job and Secret: the same for the same source and id, whatever else changed."""
    return hashlib.md5(f"{source}-{event_id}".encode(), usedforsecurity=False).hexdigest()


def child_name(parent: str, suffix: str) -> str:
    """Knative's kmeta.ChildName: ``parent + suffix`` when it fits in 63 characters, else a prefix of the
    parent and an MD5 hash in hex that keeps distinct long names distinct."""
    name = parent
    if len(parent) > LONGEST_NAME - len(suffix):
        if _HEAD - len(suffix) <= 0:
            digest = hashlib.md5((parent + suffix).encode(), usedforsecurity=False).hexdigest()
            name = parent[:_HEAD] + digest
            name += suffix[: max(0, LONGEST_NAME - len(name))]
            return name.rstrip("-.")
        digest = hashlib.md5(parent.encode(), usedforsecurity=False).hexdigest()
        name = parent[: _HEAD - len(suffix)] + digest
    return (name + suffix).rstrip("-.")


def job_name(sink: str, id_label: str) -> str:
    return child_name(sink, id_label)


def owner_reference(run: JobRun, sink: str) -> dict[str, Any]:
    return {
        "apiVersion": run.api_version,
        "kind": "JobSink",
        "name": sink,
        "uid": run.uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }


def event_secret(run: JobRun, namespace: str, sink: str, event: events.Event) -> dict[str, Any]:
    """The Secret holding ``event`` (the JSON event format) for its Job to mount."""
    id_label = event_id_label(event.source, event.id)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": job_name(sink, id_label),
            "namespace": namespace,
            "labels": {JOB_SINK_ID_LABEL: id_label, JOB_SINK_NAME_LABEL: sink},
            "ownerReferences": [owner_reference(run, sink)],
        },
        "type": "Opaque",
        "immutable": True,
        "stringData": {EVENT_KEY: events.to_structured_json(event).decode()},
    }


def _with_env(container: dict[str, Any]) -> None:
    env = container.setdefault("env", [])
    if not any(isinstance(v, dict) and v.get("name") == EXECUTION_MODE_ENV for v in env):
        env.append({"name": EXECUTION_MODE_ENV, "value": EXECUTION_MODE_BATCH})


def event_job(run: JobRun, namespace: str, sink: str, event: events.Event) -> dict[str, Any]:
    """The JobSink's Job template made into the Job of ``event``."""
    id_label = event_id_label(event.source, event.id)
    name = job_name(sink, id_label)
    job = copy.deepcopy(run.template)
    job.pop("status", None)
    job["apiVersion"], job["kind"] = "batch/v1", "Job"
    metadata = {
        k: v
        for k, v in (job.get("metadata") or {}).items()
        if k not in ("generateName", "resourceVersion", "uid")
    }
    metadata["name"], metadata["namespace"] = name, namespace
    metadata["labels"] = {
        **(metadata.get("labels") or {}),
        JOB_SINK_ID_LABEL: id_label,
        JOB_SINK_NAME_LABEL: sink,
    }
    metadata["ownerReferences"] = [*(metadata.get("ownerReferences") or []), owner_reference(run, sink)]
    job["metadata"] = metadata
    pod = job["spec"]["template"]["spec"]
    for container in pod["containers"]:
        mounts = container.setdefault("volumeMounts", [])
        if not any(m.get("name") == EVENT_VOLUME for m in mounts):
            mounts.append({"name": EVENT_VOLUME, "readOnly": True, "mountPath": EVENT_MOUNT_PATH})
        _with_env(container)
    for container in pod.get("initContainers") or []:
        _with_env(container)
    volumes = pod.setdefault("volumes", [])
    if not any(v.get("name") == EVENT_VOLUME for v in volumes):
        volumes.append({"name": EVENT_VOLUME, "secret": {"secretName": name}})
    return job


def _refusal(what: str, err: k8s.ApiException) -> Response:
    """The API server's refusal as the attempt's answer (its body the API server's message)."""
    try:
        message = orjson.loads(err.body or b"").get("message") or err.reason
    except (orjson.JSONDecodeError, TypeError, AttributeError):
        message = err.reason
    status = 503 if err.status in (401, 403) else int(err.status or 500)
    return Response(status, body=f"creating {what}: {err.status} {message}".encode())


class JobPost:
    """A ``Post`` that creates the Job of each event sent to a ``job:`` URL and hands every other URL to
    ``inner``; ``run`` is the egress's JobSink."""

    def __init__(self, inner: Post, run: JobRun, api: KubeApi) -> None:
        self.inner = inner
        self.run = run
        self.api = api

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float | None,
        ca_certs: str | None = None,
        audience: str | None = None,
    ) -> Response:
        if not url.startswith("job:"):
            return await self.inner.post(url, headers, body, timeout, ca_certs, audience)
        from kubernetes_asyncio import client as k8s  # only with a JobSink (see keventing.kubeapi)

        namespace, _, sink = (unquote(part) for part in url[len("job:") :].partition("/"))
        try:
            event = events.from_http({k.lower(): v for k, v in headers.items()}, body)
        except events.InvalidEvent as err:
            return Response(400, body=f"not a CloudEvent: {err}".encode())
        secret = event_secret(self.run, namespace, sink, event)
        job = event_job(self.run, namespace, sink, event)
        name = job["metadata"]["name"]
        options: dict[str, Any] = {} if timeout is None else {"_request_timeout": timeout}
        # The client sends a dict body as it is: every field of the template reaches the API server, where a
        # V1Job model would drop the fields this client version does not know.
        secret_body, job_body = cast("k8s.V1Secret", secret), cast("k8s.V1Job", job)
        try:
            api = await self.api.client()
            try:
                await k8s.CoreV1Api(api).create_namespaced_secret(namespace, secret_body, **options)
            except k8s.ApiException as err:
                if err.status != 409:  # AlreadyExists: the event was sent before
                    return _refusal(f'Secret "{name}"', err)
            try:
                await k8s.BatchV1Api(api).create_namespaced_job(namespace, job_body, **options)
                created = True
            except k8s.ApiException as err:
                if err.status != 409:
                    return _refusal(f'Job "{name}"', err)
                created = False
        except KubeConfigUnavailable as err:
            raise TransportError(f"JobSink {namespace}/{sink}: {err}") from None
        except (aiohttp.ClientError, TimeoutError) as err:
            raise TransportError(
                f"JobSink {namespace}/{sink}: the API server cannot be reached: {err}"
            ) from None
        log.info(
            "job created" if created else "job exists",
            extra={"jobsink": f"{namespace}/{sink}", "job": name, "event_id": event.id},
        )
        return Response(
            202,
            headers={
                "location": f"/namespaces/{namespace}/name/{sink}/sources/{event.source}/ids/{event.id}"
            },
        )
