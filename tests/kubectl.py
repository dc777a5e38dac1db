"""kubectl, as a user runs it, against the test cluster: apply YAML, get JSON, wait for conditions."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "charts" / "keventing" / "crds"
# Where the chart's ServiceAccount and leader-election Role live in these tests (the release namespace).
RELEASE_NAMESPACE = "keventing"


class Kubectl:
    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def apply(self, *documents: dict[str, Any]) -> None:
        self.run("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))

    def apply_crds(self) -> None:
        self.run("apply", "--server-side", "-f", str(CRDS))
        self.run("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        result = self.run("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(f"kubectl get {kind} {name} failed: {result.stderr.strip()}")
        return dict(json.loads(result.stdout))

    def list(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        return list(json.loads(self.run("get", kind, "-n", namespace, "-o", "json").stdout)["items"])

    def wait_for_condition(
        self, kind: str, name: str, namespace: str, condition: str, status: str, timeout: float = 60.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            last = self.get(kind, name, namespace)
            for c in ((last or {}).get("status") or {}).get("conditions", []):
                if c.get("type") == condition and c.get("status") == status:
                    assert last is not None
                    return last
            time.sleep(0.25)
        raise AssertionError(f"{kind}/{name} did not get {condition}={status} in {timeout} s; last: {last}")

    def wait_ready(self, kind: str, name: str, namespace: str, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait_for_condition(kind, name, namespace, "Ready", "True", timeout)
