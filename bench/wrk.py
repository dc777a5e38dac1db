"""Closed-loop HTTP load with wrk (one thread, C connections), or with bench.loadgen where wrk is missing.

wrk is C on epoll and costs far less per request than the servers it measures; its Lua ``done`` hook prints
the summary as JSON so nothing has to scrape its text output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.payload import EVENT_TYPE, SOURCE, event_body

_SCRIPT = """
wrk.method = "POST"
wrk.body = [[%(body)s]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Ce-Specversion"] = "1.0"
wrk.headers["Ce-Id"] = "wrk-1"
wrk.headers["Ce-Type"] = "%(type)s"
wrk.headers["Ce-Source"] = "%(source)s/wrk"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%%d,"duration_us":%%d,"errors":{"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d},' ..
    '"latency_us":{"p50":%%d,"p90":%%d,"p99":%%d,"p99.9":%%d,"max":%%d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, connections: int, duration: float, size: int = 1024) -> dict[str, Any]:
    """POST one binary-mode event of ``size`` data bytes over and over; a summary like bench.loadgen's."""
    if not available():
        return _run_loadgen(url, connections, duration, size)
    script = _SCRIPT % {"body": event_body(size).decode(), "type": EVENT_TYPE, "source": SOURCE}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="keventing-bench-") as fh:
        fh.write(script)
        fh.flush()
        cmd = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "-s",
            fh.name,
            url,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    errors = summary["errors"]
    seconds = summary["duration_us"] / 1e6
    accepted = summary["requests"] - errors["status"]
    failed = errors["status"] + errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    latency = summary["latency_us"]
    return {
        "tool": "wrk",
        "connections": connections,
        "elapsed_s": round(seconds, 3),
        "responses": summary["requests"],
        "accepted": accepted,
        "errors": failed,
        "rate": round(accepted / seconds, 1),
        "latency_ms": {k: round(v / 1000, 3) for k, v in latency.items()},
    }


def _run_loadgen(url: str, connections: int, duration: float, size: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.loadgen", "--url", url, "--concurrency", str(connections)]
    cmd += ["--duration", str(duration), "--size", str(size), "--run-id", "closed"]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=duration + 60, check=True, cwd=Path(__file__).parents[1]
    ).stdout
    result = json.loads(out)
    return {
        "tool": "bench.loadgen",
        "connections": connections,
        "elapsed_s": result["elapsed_s"],
        "responses": result["sent"],
        "accepted": result["accepted"],
        "errors": result["errors"],
        "rate": result["accepted_rate"],
        "latency_ms": result["latency_ms"],
        "cpu_s": result["cpu_s"],
    }
