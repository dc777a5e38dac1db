"""The runner's HTTP endpoints: the ops endpoints, ``GET /sources`` (what this runner runs) and, with a
manual clock, ``POST /clock`` to move it: ``{"advance": seconds}`` fires what came due, ``{"now": time}``
resets the clock without firing."""

from __future__ import annotations

from datetime import datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keventing.ops import ops_routes
from sources.clock import ManualClock
from sources.runner import SourceRunner


def sources_app(runner: SourceRunner) -> Starlette:
    async def describe(_: Request) -> Response:
        return JSONResponse(
            {
                "clock": "manual" if runner.clock.manual else "wall",
                "now": runner.clock.now().isoformat(),
                "partitions": runner.ownership.partitions,
                "owned_partitions": sorted(runner.ownership.owned),
                "pings": [
                    {"id": source_id, "next": entry.next_tick.isoformat() if entry.next_tick else None}
                    for source_id, entry in sorted(runner.scheduler.entries.items())
                ],
                "containers": [
                    {
                        "id": source_id,
                        "pid": s.process.pid if s.process else None,
                        "starts": s.starts,
                        "restarts": s.restarts,
                    }
                    for source_id, s in sorted(runner.containers.running.items())
                ],
            }
        )

    async def clock(request: Request) -> Response:
        manual = runner.clock
        if not isinstance(manual, ManualClock):
            return JSONResponse(
                {"error": "the clock is wall time; start the runner with KEVENTING_SOURCES_CLOCK=manual"},
                status_code=409,
            )
        try:
            body = await request.json()
            fired = 0
            if "now" in body:
                manual.set(datetime.fromisoformat(str(body["now"]).replace("Z", "+00:00")))
                runner.scheduler.reset()
            if "advance" in body:
                manual.advance(float(body["advance"]))
                fired = runner.scheduler.fire_due()
        except (ValueError, TypeError) as err:
            return JSONResponse(
                {"error": f'expected {{"advance": seconds}} or {{"now": "RFC 3339 time"}}: {err}'},
                status_code=400,
            )
        return JSONResponse({"now": manual.now().isoformat(), "fired": fired})

    routes = [
        *ops_routes(runner.ready),
        Route("/sources", describe, methods=["GET"]),
        Route("/clock", clock, methods=["POST"]),
    ]
    return Starlette(routes=routes)
