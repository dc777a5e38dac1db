"""Metrics are objects handed to the code that updates them, not module globals.

Each service defines its metrics as a ``MetricSet`` subclass whose constructor registers them in a given
registry; ``of()`` returns the one set registered in a registry (a registry holds each name once), so a
served process shares the default registry and a test can use a private one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import ClassVar, Self

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString


class MetricSet:
    _registered: ClassVar[dict[tuple[type, int], MetricSet]] = {}

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    @classmethod
    def of(cls, registry: CollectorRegistry = REGISTRY) -> Self:
        key = (cls, id(registry))
        metrics = MetricSet._registered.get(key)
        if metrics is None:
            metrics = MetricSet._registered[key] = cls(registry)
        assert isinstance(metrics, cls)
        return metrics


class View:
    """A family served again under another name (Knative's), derived when Prometheus scrapes: nothing more
    is observed per event. ``labels`` maps a source sample's labels to the view's; it must keep every source
    series distinct. ``labelnames`` are the view's labels, for whoever reads the registry's families."""

    kind: ClassVar[str]

    def __init__(
        self,
        source: Callable[[], Iterable[Metric]],
        source_name: str,
        name: str,
        documentation: str,
        labels: Callable[[Mapping[str, str]], dict[str, str]],
        labelnames: tuple[str, ...] = (),
    ) -> None:
        self.source = source
        self.source_name = source_name
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self._labelnames = labelnames

    def describe(self) -> list[Metric]:
        return [Metric(self.name, self.documentation, self.kind)]

    def samples(self) -> Iterator[tuple[str, Mapping[str, str], float]]:
        """The source family's samples: (suffix after the family's name, labels, value)."""
        for family in self.source():
            if family.name == self.source_name:
                for sample in family.samples:
                    yield sample.name[len(family.name) :], sample.labels, sample.value


class GaugeView(View):
    """A gauge under another name and labels (``keventing_dispatcher_in_flight`` → Knative's
    ``event_dispatch_in_flight_count``)."""

    kind = "gauge"

    def collect(self) -> Iterator[Metric]:
        view = Metric(self.name, self.documentation, self.kind)
        for suffix, labels, value in self.samples():
            if suffix == "":
                view.add_sample(self.name, self.labels(labels), value)
        yield view


class SecondsView(View):
    """A millisecond histogram served again under Knative's OpenTelemetry name, in seconds, with Knative's
    attribute names as labels (``kn.eventing.dispatch.duration`` → ``kn_eventing_dispatch_duration_seconds``),
    from the same buckets."""

    kind = "histogram"

    def collect(self) -> Iterator[Metric]:
        view = Metric(self.name, self.documentation, self.kind)
        for suffix, source_labels, value in self.samples():
            if suffix not in ("_bucket", "_sum", "_count"):
                continue  # _created: Knative's has none
            labels = self.labels(source_labels)
            if suffix == "_bucket":
                labels["le"] = floatToGoString(float(source_labels["le"]) / 1000)
            elif suffix == "_sum":
                value /= 1000
            view.add_sample(self.name + suffix, labels, value)
        yield view
