"""Source reports: what a source adapter tells the controller about a source it runs.

The contract flows from the controller to the data plane; a few things only the data plane can know (whether
an ApiServerSource's service account may watch what it names, whether its watches are established). The
sources runner that owns a source publishes a :class:`SourceReport` on the compacted
``<instance>.source-reports`` topic (key = the contract entry's id, tombstone when it stops running it); the
controller reads the table and turns the reports into the source's conditions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson

from keventing.contract import ContractModel
from keventing.kafka.compacted import CompactedTopic
from keventing.restarting import restarting

log = logging.getLogger("keventing.sourcereports")


class ReportedCondition(ContractModel):
    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str | None = None
    message: str | None = None


class SourceReport(ContractModel):
    id: str
    # The generation of the resource whose spec the report is about: an older report says nothing of a newer spec.
    generation: int
    conditions: tuple[ReportedCondition, ...] = ()
    namespaces: tuple[str, ...] = ()
    # The CloudEvents source the adapter sends with (an ApiServerSource's: the API server's URL).
    event_source: str | None = None

    def condition(self, type_: str) -> ReportedCondition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def decode(cls, value: bytes) -> SourceReport:
        return cls.model_validate(orjson.loads(value))


async def follow_reports(
    topic: CompactedTopic, reports: dict[str, SourceReport], changed: Callable[[], None]
) -> None:
    """Keep ``reports`` equal to the table on ``topic``, calling ``changed`` after every batch."""

    async def connection() -> None:
        first = True
        async for batch in topic.follow():
            if first:
                reports.clear()
                first = False
            for key, value in batch:
                if value is None:
                    reports.pop(key, None)
                    continue
                try:
                    reports[key] = SourceReport.decode(value)
                except ValueError as err:
                    log.warning("ignoring an unreadable source report", extra={"key": key, "error": str(err)})
            changed()

    await restarting(connection, log, "source reports stream interrupted; reconnecting")
