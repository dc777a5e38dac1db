"""JobSink (Kubernetes mode): a topic and an ingress, and an egress that turns each event into a Kubernetes Job
(the ``job:`` destination, :mod:`dispatcher.jobsink`).

The sink's address takes events like any addressable: a 202 means the event is on its topic. The dispatcher
then creates the event's Secret and Job, one event at a time; a creation the API server refuses is a failed
attempt, retried with the default delivery. In local mode there is no Kubernetes to run a Job: the JobSink is
not Ready, with the reason ``KubernetesOnly``, and has no topic, address or egress.
"""

from __future__ import annotations

from urllib.parse import quote

from controller.conditions import Conditions
from controller.context import Context, Contribution
from controller.topicsinks import CONDITIONS, TopicSink, reconcile_topic_sink
from keventing import naming
from keventing.contract import JobRun
from keventing.resources import Status
from keventing.resources.jobsinks import (
    JOB_SINK_NAME_LABEL,
    KUBERNETES_ONLY_MESSAGE,
    KUBERNETES_ONLY_REASON,
    JobSink,
)


def job_sink_path(namespace: str, name: str) -> str:
    return f"/jobsinks/{namespace}/{name}"


def job_destination(sink: JobSink) -> str:
    """The ``job:`` URL of the sink's egress: the dispatcher creates a Job for each event sent to it."""
    return f"job:{quote(sink.namespace)}/{quote(sink.name)}"


def reconcile_job_sinks(ctx: Context) -> Contribution:
    out = Contribution()
    for sink in ctx.of(JobSink):
        # Knative's status.job.selector: the label every Job of this sink carries.
        status = Status.model_validate(
            {
                "observedGeneration": sink.metadata.generation,
                "job": {"selector": f"{JOB_SINK_NAME_LABEL}={sink.name}"},
            }
        )
        if not ctx.config.kubernetes:
            conditions = Conditions()
            conditions.false("TopicReady", KUBERNETES_ONLY_REASON, KUBERNETES_ONLY_MESSAGE)
            conditions.false("Addressable", KUBERNETES_ONLY_REASON, KUBERNETES_ONLY_MESSAGE)
            status.conditions = conditions.finish(CONDITIONS)
            out.addressable(sink.key, status)
            continue
        plan = TopicSink(
            topic=naming.job_sink_topic(sink.namespace, sink.name),
            path=job_sink_path(sink.namespace, sink.name),
            egress="job",
            destination=job_destination(sink),
            # A JobSink has no delivery spec of its own: a refused creation is retried as a Broker's
            # deliveries are by default.
            delivery=ctx.config.default_delivery,
            topic_message="each event becomes a Job",
            addressable_message="; ".join(sink.warnings()) or None,
            job=JobRun(
                api_version=sink.apiVersion, uid=sink.metadata.uid or str(sink.key), template=sink.job
            ),
        )
        reconcile_topic_sink(ctx, out, sink, plan, status)
    return out
