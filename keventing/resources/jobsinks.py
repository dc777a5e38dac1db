"""Knative's JobSink (``sinks.knative.dev/v1alpha1``): an addressable that runs one Kubernetes Job per event.

``spec.job`` is a whole ``batch/v1`` Job, kept as written (Kubernetes validates it when each Job is created);
what keventing relies on to run it is checked here, so that a template that can never make a Job is refused
at apply time instead of failing on every event. A JobSink runs in Kubernetes mode only: the local controller
keeps it not Ready with the reason ``KubernetesOnly``.

The names below are Knative's (cmd/jobsink, pkg/apis/sinks): each event's Job and the Secret holding the
event carry the name and id labels, and the event is mounted as ``/etc/jobsink-event/event``.
"""

from __future__ import annotations

from typing import Any

from keventing.resources.base import Model, Resource, ResourceInvalid

# The JobSink a Job or Secret was made for, and a hash of its event's source and id.
JOB_SINK_NAME_LABEL = "sinks.knative.dev/job-sink-name"
JOB_SINK_ID_LABEL = "sinks.knative.dev/job-sink-id"
# The Secret volume holding the event (key ``event``, the event in the JSON event format) and its mount.
EVENT_VOLUME = "jobsink-event"
EVENT_MOUNT_PATH = "/etc/jobsink-event"
EVENT_KEY = "event"
# Knative's webhook gives every container of the template this variable (unless it sets its own).
EXECUTION_MODE_ENV = "KNATIVE_EXECUTION_MODE"
EXECUTION_MODE_BATCH = "batch"
# A Job's pods must not restart in place (batch/v1 validation).
JOB_RESTART_POLICIES = ("Never", "OnFailure")

KUBERNETES_ONLY_REASON = "KubernetesOnly"
KUBERNETES_ONLY_MESSAGE = (
    "JobSink needs Kubernetes mode: each event becomes a Kubernetes Job, and the local mode has no "
    "Kubernetes to run it; apply it to a cluster (kev --kubeconfig PATH apply -f ...)"
)


class JobSinkSpec(Model):
    # A batch/v1 Job, as Kubernetes takes it (checked in JobSink.validate_semantics).
    job: dict[str, Any] | None = None


def _mapping(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ResourceInvalid(path, f"must be a mapping, got {type(value).__name__}")
    return value


def _containers(value: object, path: str, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, list) or (required and not value):
        raise ResourceInvalid(
            path, "required: a list of at least one container" if required else "must be a list"
        )
    for i, container in enumerate(value):
        item = _mapping(container, f"{path}[{i}]")
        for field in ("name", "image"):
            if not isinstance(item.get(field), str) or not item[field]:
                raise ResourceInvalid(f"{path}[{i}].{field}", "required")


class JobSink(Resource):
    API_VERSIONS = ("sinks.knative.dev/v1alpha1",)
    KIND = "JobSink"
    PLURAL = "jobsinks"
    ADDRESSABLE = True
    KUBERNETES_ONLY = True

    spec: JobSinkSpec = JobSinkSpec()

    @property
    def job(self) -> dict[str, Any]:
        """``spec.job`` of a validated JobSink."""
        assert self.spec.job is not None
        return self.spec.job

    def validate_semantics(self) -> None:
        job = self.spec.job
        if job is None:
            raise ResourceInvalid("spec.job", "required: the batch/v1 Job to run for each event")
        for field, wanted in (("apiVersion", "batch/v1"), ("kind", "Job")):
            if field in job and job[field] != wanted:
                raise ResourceInvalid(f"spec.job.{field}", f"must be {wanted!r}, got {job[field]!r}")
        if "metadata" in job:
            _mapping(job["metadata"], "spec.job.metadata")
        spec = _mapping(job.get("spec"), "spec.job.spec") if "spec" in job else None
        if spec is None:
            raise ResourceInvalid("spec.job.spec", "required: the Job's spec, with its pod template")
        template = _mapping(spec.get("template"), "spec.job.spec.template")
        pod = _mapping(template.get("spec"), "spec.job.spec.template.spec")
        _containers(pod.get("containers"), "spec.job.spec.template.spec.containers", required=True)
        _containers(pod.get("initContainers"), "spec.job.spec.template.spec.initContainers", required=False)
        restart = pod.get("restartPolicy")
        if restart not in JOB_RESTART_POLICIES:
            said = "required" if restart is None else f"{restart!r} is not allowed"
            raise ResourceInvalid(
                "spec.job.spec.template.spec.restartPolicy",
                f"{said}: a Job's pods must have restartPolicy {' or '.join(JOB_RESTART_POLICIES)}",
            )
        volumes = pod.get("volumes")
        if volumes is not None and not isinstance(volumes, list):
            raise ResourceInvalid("spec.job.spec.template.spec.volumes", "must be a list")

    def warnings(self) -> list[str]:
        metadata = (self.spec.job or {}).get("metadata") or {}
        return [
            f"spec.job.metadata.{field} is not used: each event's Job is named after the JobSink and the event"
            for field in ("name", "generateName", "namespace")
            if isinstance(metadata, dict) and field in metadata
        ]


KINDS: tuple[type[Resource], ...] = (JobSink,)
