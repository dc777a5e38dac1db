"""The operator at scale: N Triggers applied to one Broker on a real kube-apiserver, timed until all are Ready.

``python -m bench.kubernetes_scale --triggers 10000`` starts its own Kafka and test cluster, applies the CRDs
and one Broker, then the Triggers (server-side apply, 16 at a time), and reports: seconds until every
Trigger is Ready, the operator's peak RSS and CPU seconds, and the API server requests the operator made per
Trigger (the apiserver's ``apiserver_request_total`` for the operator's user agent, before and after). The
data plane is not started: this measures the control plane alone. Results go to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config

from bench.meter import ProcessMeter, cpu_seconds, process_tree
from kev.cluster.apply import apply_crds
from kev.cluster.launcher import LocalCluster
from kev.kafka.embedded import EmbeddedKafka, free_port
from kev.stack import ensure_key_file, kev_command

RESULTS = Path(__file__).resolve().parent / "results"


def apiserver_requests(cluster: LocalCluster) -> float:
    """Every request the API server has counted (``apiserver_request_total``, all label sets)."""
    state = cluster.state()
    assert state is not None
    context = ssl.create_default_context(cafile=str(cluster.pki.ca_cert))
    request = urllib.request.Request(
        f"{state.server}/metrics", headers={"Authorization": f"Bearer {cluster.pki.admin_token}"}
    )
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def apply_triggers(kubeconfig: str, namespace: str, count: int) -> None:
    api = await config.new_client_from_config(config_file=kubeconfig)
    async with api:
        core = client.CoreV1Api(api)
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        custom = client.CustomObjectsApi(api)
        apply: dict[str, Any] = {"_content_type": "application/apply-patch+yaml"}
        broker = {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "default", "namespace": namespace},
        }
        await custom.patch_namespaced_custom_object(
            "eventing.knative.dev",
            "v1",
            namespace,
            "brokers",
            "default",
            broker,
            field_manager="bench",
            **apply,
        )
        semaphore = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            name = f"t{i:05d}"
            body = {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Trigger",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "broker": "default",
                    "filter": {"attributes": {"type": f"bench.{i}"}},
                    "subscriber": {"uri": "http://127.0.0.1:9/sink"},
                },
            }
            async with semaphore:
                await custom.patch_namespaced_custom_object(
                    "eventing.knative.dev",
                    "v1",
                    namespace,
                    "triggers",
                    name,
                    body,
                    field_manager="bench",
                    **apply,
                )

        await asyncio.gather(*(one(i) for i in range(count)))


async def count_ready(kubeconfig: str, namespace: str) -> int:
    api = await config.new_client_from_config(config_file=kubeconfig)
    async with api:
        custom = client.CustomObjectsApi(api)
        listed = await custom.list_namespaced_custom_object(
            "eventing.knative.dev", "v1", namespace, "triggers"
        )
        return sum(
            1
            for item in listed["items"]
            for c in (item.get("status") or {}).get("conditions", [])
            if c.get("type") == "Ready" and c.get("status") == "True"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    # SIGTERM (a timeout, Ctrl-C in a pipeline) still stops the Kafka and the cluster this started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="keventing-kube-scale-"))
    kafka = EmbeddedKafka(port=free_port(), data_dir=work / "kafka", progress=print)
    kafka.start()
    cluster = LocalCluster(work / "cluster", progress=print)
    cluster.start()
    operator: subprocess.Popen[bytes] | None = None
    try:
        kubeconfig = str(cluster.kubeconfig_path)
        asyncio.run(apply_crds(kubeconfig))
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "KEVENTING_INSTANCE": f"scale-{uuid.uuid4().hex[:6]}",
            "KEVENTING_CONTROLLER_PORT": str(free_port()),
            "KEVENTING_HTTP_HOST": "127.0.0.1",
            "KEVENTING_DEFAULT_TOPIC_PARTITIONS": "1",
            "KEVENTING_LOG_LEVEL": "WARNING",
            # The operator alone: no data plane verifies its contract, but it signs it and refuses to start
            # without a key.
            "KEVENTING_CONTRACT_KEY_FILE": str(ensure_key_file(work / "contract.key")),
        }
        log = (work / "operator.log").open("wb")
        operator = subprocess.Popen(
            [*kev_command(), "controller", "--kubernetes", "--kubeconfig", kubeconfig],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        meter = ProcessMeter({"operator": lambda: operator.pid if operator else None}).__enter__()
        time.sleep(5)
        before = apiserver_requests(cluster)
        namespace = f"scale-{uuid.uuid4().hex[:6]}"
        started = time.monotonic()
        asyncio.run(apply_triggers(kubeconfig, namespace, args.triggers))
        applied = time.monotonic() - started
        ready = 0
        while ready < args.triggers and time.monotonic() - started < args.timeout:
            time.sleep(2)
            ready = asyncio.run(count_ready(kubeconfig, namespace))
            print(f"{time.monotonic() - started:6.0f} s: {ready}/{args.triggers} Triggers Ready", flush=True)
        elapsed = time.monotonic() - started
        meter.__exit__()
        after = apiserver_requests(cluster)
        result = {
            "triggers": args.triggers,
            "ready": ready,
            "apply_seconds": round(applied, 1),
            "all_ready_seconds": round(elapsed, 1) if ready == args.triggers else None,
            "operator_peak_rss_mib": meter.peak_mib()["operator"],
            "operator_cpu_seconds": round(cpu_seconds(process_tree(operator.pid)), 1),
            # The API server labels requests by verb and resource, not by client: the bench's own applies
            # are one request each, the rest is the operator's (and kube-controller-manager's, a little).
            "apiserver_requests_per_trigger": round((after - before - args.triggers) / args.triggers, 2),
        }
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"kubernetes-scale-{time.strftime('%Y%m%dT%H%M%S')}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        print(f"written to {out}")
        if ready < args.triggers:
            sys.exit(1)
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(30)
        cluster.stop()
        kafka.stop()


if __name__ == "__main__":
    main()
