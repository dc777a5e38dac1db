"""Malformed HTTP requests and CloudEvents against the running receiver (Hypothesis, derandomized: the same
examples every run). Each request gets an answer within a bound, never a 5xx other than 503 with
Retry-After; every event answered 202 reaches the Trigger's subscriber; the receiver serves afterwards."""

from __future__ import annotations

import itertools
import json
import socket
import string
from urllib.parse import quote

import httpx
import pytest
from conftest import Kev, Reaction, RecordingSink
from helpers import broker_doc, trigger_doc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ANSWER_WITHIN = 10.0  # seconds: every generated request is complete, so no read timeout should be needed
ATTRIBUTES = ["specversion", "id", "type", "source", "datacontenttype", "dataschema", "subject", "time"]
CONTENT_TYPES = [
    "application/cloudevents+json",
    "application/cloudevents+json; charset=utf-8",
    "application/json",
    "text/plain",
    "application/cloudevents-batch+json",
    "application/cloudevents+xml",
    "",
]
_ids = itertools.count()

token = st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=24)
# Raw header bytes: NUL, DEL, bytes above 0x7f and percent-escapes of control characters included.
header_value = st.one_of(
    st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.text(max_size=60).map(lambda t: quote(t, safe="").encode()),
    st.sampled_from([b"1.0", b"/s", b"dev.test", b"application/json", b"a%0D%0Ab", b"%00", b"%"]),
)
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


@st.composite
def binary_request(draw: st.DrawFn, path: str) -> tuple[bytes, str | None]:
    headers: list[tuple[bytes, bytes]] = []
    event_id = None
    if draw(st.booleans()):
        event_id = f"fuzz-{next(_ids)}"
        headers += [(b"ce-specversion", b"1.0"), (b"ce-id", event_id.encode())]
        headers += [(b"ce-type", b"dev.fuzz"), (b"ce-source", b"/fuzz")]
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.one_of(st.sampled_from(ATTRIBUTES), token))
        headers.append((f"ce-{name}".encode(), draw(header_value)))
    for _ in range(draw(st.integers(0, 3))):
        headers.append((draw(token).encode(), draw(header_value)))
    content_type = draw(st.sampled_from(CONTENT_TYPES[2:]))
    if content_type:
        headers.append((b"content-type", content_type.encode()))
    body = draw(st.binary(max_size=300))
    return _request(
        draw(st.sampled_from(["POST", "POST", "POST", "PUT", "GET"])), path, headers, body
    ), event_id


@st.composite
def structured_request(draw: st.DrawFn, path: str) -> tuple[bytes, str | None]:
    document: dict[str, object] = {}
    event_id = None
    if draw(st.booleans()):
        event_id = f"fuzz-{next(_ids)}"
        document.update(specversion="1.0", id=event_id, type="dev.fuzz", source="/fuzz")
    extra = draw(
        st.dictionaries(
            st.one_of(st.sampled_from([*ATTRIBUTES, "data", "data_base64"]), st.text(max_size=24)),
            json_value,
            max_size=5,
        )
    )
    document.update(extra)
    if "id" in extra:
        event_id = None  # the id the receiver sees is no longer ours to look for
    text = json.dumps(document)
    if draw(st.booleans()) and "data" not in document:
        # Deep nesting around the bound of 64 levels and past the encoder's 255.
        data = _nested(draw(st.sampled_from([1, 63, 64, 65, 254, 256, 600, 1100])))
        text = text[:-1] + (", " if document else "") + f'"data": {data}' + "}"
    body = text.encode("utf-8", "surrogatepass")
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    headers = [(b"content-type", content_type.encode())] if content_type else []
    return _request("POST", path, headers, body), event_id


@st.composite
def junk_request(draw: st.DrawFn, path: str) -> tuple[bytes, str | None]:
    """Request lines and header blocks the HTTP parser has to refuse or survive."""
    line = draw(
        st.one_of(
            st.just(f"POST {path} HTTP/1.1"),
            st.sampled_from([f"POST {path} HTTP/9.9", "POST  HTTP/1.1", f"post {path} HTTP/1.1", "\x00"]),
            st.text(alphabet=string.printable.replace("\r", "").replace("\n", ""), max_size=40),
        )
    )
    lines = [line.encode("latin-1", "replace"), b"Host: localhost"]
    for _ in range(draw(st.integers(0, 4))):
        lines.append(
            draw(
                st.sampled_from(
                    [
                        b"Content-Length: 2",
                        b"Content-Length: -1",
                        b"Content-Length: 99999999999999999999",
                        b"Transfer-Encoding: chunked",
                        b"Transfer-Encoding: gzip, chunked",
                        b" folded: continuation",
                        b"no-colon",
                        b": empty-name",
                        b"X\x00Y: z",
                    ]
                )
            )
        )
    return b"\r\n".join(lines) + b"\r\n\r\n{}", None


def _request(method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: localhost", f"Content-Length: {len(body)}".encode()]
    head += [name + b": " + value for name, value in headers]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _exchange(port: int, request: bytes) -> bytes:
    """One request on its own connection; the answer's status line and headers."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = b""
        while b"\r\n\r\n" not in received:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                pytest.fail(f"no answer within {ANSWER_WITHIN} s to {request[:200]!r}")
            if not chunk:
                break
            received += chunk
        return received


@pytest.fixture
def fuzz_target(kev: Kev, sink: RecordingSink, ns: str) -> tuple[int, str, str]:
    # "all" delivers every event; "refused" has a subscriber that refuses every event, so each one must
    # reach its dead-letter sink instead.
    sink.respond_with(f"{ns}/refuses", lambda _: Reaction(status=400))
    refused = trigger_doc(
        "refused",
        ns,
        "default",
        sink.url(f"{ns}/refuses"),
        delivery={"retry": 0, "deadLetterSink": {"uri": sink.url(f"{ns}/dead")}},
    )
    kev.apply(broker_doc("default", ns), trigger_doc("all", ns, "default", sink.url(f"{ns}/all")), refused)
    kev.wait_ready("Broker", "default", ns)
    kev.wait_ready("Trigger", "all", ns)
    kev.wait_ready("Trigger", "refused", ns)
    # The Triggers start at the latest offset: probe until one event arrives at both, so none is missed later.
    kev.wait_for(lambda: kev.send(ns, "default", "probe").status_code == 202, what="the ingress")
    kev.wait_for(lambda: sink.requests(f"{ns}/all") and sink.requests(f"{ns}/dead"), what="the Triggers")
    url = httpx.URL(kev.broker_url(ns, "default"))
    return url.port or 80, url.path, f"{ns}/all"


def test_malformed_requests_never_get_a_5xx_or_a_hang_and_every_202_is_delivered_or_dead_lettered(
    kev: Kev, sink: RecordingSink, ns: str, fuzz_target: tuple[int, str, str]
) -> None:
    port, path, sink_path = fuzz_target
    accepted: set[str] = set()
    statuses: list[int] = []
    paths = st.sampled_from([path, path, path, f"{path}/", "/", f"/{ns}/nope", "/%00", "/a/b/c/d"])

    @settings(
        max_examples=250,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def exchange(data: st.DataObject) -> None:
        target = data.draw(paths)
        kind = data.draw(st.sampled_from([binary_request, structured_request, junk_request]))
        request, event_id = data.draw(kind(target))
        answer = _exchange(port, request)
        if not answer:
            return  # closed without an answer: only for requests the parser refused outright
        status = int(answer.split(b" ", 2)[1])
        statuses.append(status)
        assert status < 500 or (status == 503 and b"\r\nretry-after:" in answer.lower()), (request, answer)
        if status == 202 and event_id is not None and target == path:
            accepted.add(event_id)

    exchange()
    assert accepted and 400 in statuses, "the generator should produce both accepted and invalid events"
    assert kev.send(ns, "default", "after-fuzz").status_code == 202
    kev.wait_for(
        lambda: accepted <= {e.id for e in sink.events(sink_path)},
        timeout=60,
        what=f"the {len(accepted)} accepted events at the subscriber",
    )
    dead_path = sink_path.rsplit("/", 1)[0] + "/dead"
    kev.wait_for(
        lambda: accepted <= {e.id for e in sink.events(dead_path)},
        timeout=60,
        what=f"the {len(accepted)} accepted events at the refusing Trigger's dead-letter sink",
    )
