"""RequestReply on the running stack: a request POSTed to its address is answered with the correlated reply that
came back through the Broker, times out cleanly with 504 when none comes, and ignores replies whose id it did not
sign."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from conftest import Kev, Reaction, Received, RecordingSink
from helpers import broker_doc, trigger_doc


def _request_reply(name: str, ns: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1alpha1",
        "kind": "RequestReply",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "brokerRef": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"},
            **spec,
        },
    }


def _answer(received: Received, tamper: bool = False) -> Reaction:
    """The service behind the Trigger: replies with an event carrying the request's correlation id."""
    event = received.event
    assert event is not None
    correlation = event.attributes["correlationid"]
    if tamper:  # the same shape, a signature this RequestReply never made
        request_id, _, process = correlation.split(":")
        correlation = f"{request_id}:{'A' * 43}:{process}"
    body = json.dumps({"answer_to": event.id, "n": json.loads(event.data or b"{}").get("n")}).encode()
    headers = {
        "ce-specversion": "1.0",
        "ce-id": f"reply-{event.id}",
        "ce-type": "order.reply",
        "ce-source": "/answerer",
        "ce-replyid": correlation,
        "content-type": "application/json",
    }
    return Reaction(200, body=body, headers=headers)


def _post(url: str, event_id: str, n: int, timeout: float = 30.0) -> httpx.Response:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": "order.request",
        "ce-source": "/client",
        "content-type": "application/json",
    }
    return httpx.post(url, headers=headers, content=json.dumps({"n": n}).encode(), timeout=timeout)


def test_each_request_is_answered_with_its_own_reply_through_the_broker(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    path = f"{ns}/answerer"
    sink.respond_with(path, _answer)
    kev.apply(
        broker_doc("default", ns),
        _request_reply("orders", ns, timeout="PT20S"),
        trigger_doc(
            "answerer", ns, "default", sink.url(path), filter={"attributes": {"type": "order.request"}}
        ),
    )
    kev.wait_ready("Trigger", "answerer", ns)
    rr = kev.wait_ready("RequestReply", "orders", ns)
    url = rr.status.address.url
    assert url.endswith(f"/requestreplies/{ns}/orders")

    ids = [f"req-{uuid.uuid4().hex[:8]}" for _ in range(6)]
    with ThreadPoolExecutor(len(ids)) as pool:
        responses = list(pool.map(lambda i: _post(url, ids[i], i), range(len(ids))))
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        # The reply event, in binary mode: its attributes as ce- headers, its data as the body.
        assert response.headers["ce-type"] == "order.reply"
        assert response.headers["ce-id"] == f"reply-{ids[i]}"
        assert response.headers["content-type"] == "application/json"
        assert json.loads(response.content) == {"answer_to": ids[i], "n": i}
    # The request reached the subscriber through the Broker, with the correlation id the reply carried back.
    correlations = {r.event.id: r.event.attributes["correlationid"] for r in sink.requests(path) if r.event}
    for i, response in enumerate(responses):
        assert correlations[ids[i]].startswith(f"{ids[i]}:")
        assert response.headers["ce-replyid"] == correlations[ids[i]]


def test_a_request_without_a_reply_times_out_with_504_and_a_forged_reply_is_not_taken(
    kev: Kev, sink: RecordingSink, ns: str
) -> None:
    path = f"{ns}/forger"
    sink.respond_with(path, lambda received: _answer(received, tamper=True))
    kev.apply(
        broker_doc("default", ns),
        _request_reply("slow", ns, timeout="2s"),
        trigger_doc(
            "forger", ns, "default", sink.url(path), filter={"attributes": {"type": "order.request"}}
        ),
    )
    kev.wait_ready("Trigger", "forger", ns)
    url = kev.wait_ready("RequestReply", "slow", ns).status.address.url

    started = time.monotonic()
    response = _post(url, "lonely-1", 1)
    waited = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert "no reply to request lonely-1 within 2 s" in response.text
    assert 2.0 <= waited < 10.0
    # The forged reply was on the Broker and ignored: the subscriber did answer, just not with a valid id.
    (answered,) = sink.wait_for(path, 1)
    assert answered.event is not None and answered.event.id == "lonely-1"


def test_a_request_reply_without_its_broker_is_not_ready_and_bad_specs_are_refused(
    kev: Kev, ns: str, tmp_path: Path
) -> None:
    kev.apply(_request_reply("orphan", ns))

    def ready_condition() -> Any:
        rr = kev.get("RequestReply", "orphan", ns)
        ready = rr.status.condition("Ready") if rr else None
        return ready if ready is not None and ready.status == "False" else None

    ready = kev.wait_for(ready_condition, what="the RequestReply's status")
    assert ready.reason == "BrokerDoesNotExist" and 'Broker "default" does not exist' in ready.message
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps(_request_reply("bad", ns, replyAttribute="id")))
    refused = kev.cli("apply", "--dry-run", "-f", str(bad))
    assert refused.returncode != 0
    assert "spec.replyAttribute" in refused.stderr and "core CloudEvents attribute" in refused.stderr
