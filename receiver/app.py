"""The receiver's ASGI application: the ingress hot path as plain ASGI, ops endpoints through Starlette.

Plain ASGI on the hot path because a request is one header mapping and one body: routing and Request
objects would cost more than everything else the receiver does per event.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from keventing.contract import Ingress
from keventing.contractstream import ContractFollower
from keventing.eventtypes import EventTypeRegistry
from keventing.kafka.client import MAX_REQUEST_SIZE
from keventing.kafka.connection import KafkaConnection
from keventing.kafka.pool import ProducerPool
from keventing.ops import freeze_startup_heap, ops_app
from keventing.tls import ClientTrust
from keventing.tracing import Tracing
from receiver.authorization import Authorizer, EventCheck
from receiver.batching import BatchProducer, RetryAlone
from receiver.ingress import (
    ALLOW,
    Answer,
    IngressHandler,
    IngressTable,
    NotConnected,
    body_timed_out,
    too_large,
)
from receiver.metrics import IngressMetrics, knative_view
from receiver.oidc import IssuerUnavailable, OidcVerifier, Unauthenticated
from receiver.protocol import DirectHandler, Reply
from receiver.requestreply import RequestReplies
from receiver.settings import ReceiverSettings
from receiver.transform import Transformer

log = logging.getLogger("keventing.receiver")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
OPTIONS_HEADERS = [
    (b"allow", ALLOW.encode()),
    (b"webhook-allowed-origin", b"*"),
    (b"webhook-allowed-rate", b"*"),
]


class ReceiverApp:
    def __init__(
        self,
        settings: ReceiverSettings,
        metrics: IngressMetrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.contract_keys = settings.contract_keys()  # none configured: the service does not start
        self.tracing = tracing
        self.table = IngressTable()
        metrics = metrics or IngressMetrics.of()
        self.contract: ContractFollower[Ingress] = ContractFollower(
            lambda entry: entry.ingress, self._on_ingress, what="ingresses"
        )
        self.producer: AIOKafkaProducer | None = None
        # Batching producers by connection (None: the receiver's own cluster), as the pool starts them.
        self.batches: dict[KafkaConnection | None, BatchProducer] = {}
        # The batches go out through receiver.produce, not the producer's sender: its linger is the batches'.
        self.producers = ProducerPool(settings.kafka_connection, self._on_producer)
        self.event_types = EventTypeRegistry(
            settings.kafka_connection, settings.resources_topic, settings.eventtype_limits
        )
        self.handler = IngressHandler(
            self.table,
            self._produce,
            settings.max_event_bytes,
            settings.retry_after_seconds,
            metrics,
            max_record_bytes=MAX_REQUEST_SIZE,
            on_event=self.event_types.observe,
            instance=settings.instance,
            tracing=tracing,
            event_type_label=settings.metrics_event_type,
            transformer=Transformer(30.0, ClientTrust(settings.trust_bundle()), settings.token_source()),
            requests=RequestReplies(self.contract_keys, settings.kafka_connection),
            submit=self._submit,
            submit_alone=self._submit_alone,
        )
        self.ops = ops_app(self.ready)
        self.verifier: OidcVerifier | None = None
        # The issuer is configured where tokens may be asked for; each ingress says whether they are
        # (authentication-oidc as the controller applies it: the environment, or config-features).
        if settings.oidc_issuer:
            self.verifier = OidcVerifier(
                settings.oidc_issuer,
                settings.oidc_issuer_ca_file,
                settings.oidc_jwks_refresh_seconds,
                jwks_url=settings.oidc_jwks_url,
            )
        self.authorizer = Authorizer(settings.default_authorization_mode)
        self.https_only = settings.transport_encryption == "strict"
        self._tasks: list[asyncio.Task[None]] = []

    def ready(self) -> bool:
        return self.producer is not None and self.contract.synced

    # The direct path (receiver.protocol.DirectApp): POSTs to an ingress in the contract skip ASGI.
    @property
    def max_event_bytes(self) -> int:
        return self.settings.max_event_bytes

    @property
    def body_timeout_seconds(self) -> float:
        return self.settings.body_timeout_seconds

    def direct_route(self, path: str, scheme: str) -> DirectHandler | None:
        if self.https_only and scheme != "https":
            return None  # the ASGI path refuses it, saying why
        ingress = self.handler.lookup(path)
        if ingress is None:
            return None  # the ASGI path says why: no such resource, or the contract is not loaded yet
        if not self._requires_token(ingress):
            return functools.partial(self.handler.begin, ingress)
        return functools.partial(self._direct_authenticated, ingress)

    def _requires_token(self, ingress: Ingress) -> bool:
        """authentication-oidc for this ingress: the controller's, else (an older contract) this receiver's."""
        return ingress.oidc if ingress.oidc is not None else self.settings.oidc_enabled

    def _direct_authenticated(
        self, ingress: Ingress, headers: dict[str, str], body: bytes, _reply: Reply
    ) -> Awaitable[Answer]:
        return self._handle_authenticated(ingress, headers, body)

    async def _handle_authenticated(self, ingress: Ingress, headers: dict[str, str], body: bytes) -> Answer:
        """The direct path with OIDC on: the sender's token and the EventPolicies first, as on the ASGI path."""
        refusal, check = await self._authenticate(headers.get("authorization"), ingress)
        if refusal is not None:
            return refusal
        return await self.handler.handle(ingress, headers, body, check)

    async def _produce(
        self, ingress: Ingress, key: bytes | None, value: bytes | None, headers: list
    ) -> object:
        try:
            return await self._submit(ingress, key, value, headers)
        except RetryAlone:  # refused with the records it shared a batch with: alone, it may be stored
            return await self._submit_alone(ingress, key, value, headers)

    def _submit(
        self, ingress: Ingress, key: bytes | None, value: bytes | None, headers: list
    ) -> Awaitable[object]:
        return self._batches(ingress).send(ingress.topic, key, value, headers)

    def _submit_alone(
        self, ingress: Ingress, key: bytes | None, value: bytes | None, headers: list
    ) -> Awaitable[object]:
        return self._batches(ingress).send_alone(ingress.topic, key, value, headers)

    def _batches(self, ingress: Ingress) -> BatchProducer:
        batches = self.batches.get(ingress.connection)
        if batches is None:
            if ingress.connection is None:
                raise NotConnected("the receiver is not connected to Kafka yet")
            raise NotConnected(
                f"the receiver is not connected to the Kafka cluster of {ingress.kind} "
                f"{ingress.namespace}/{ingress.name} yet"
            )
        return batches

    def _on_producer(self, connection: KafkaConnection | None, producer: AIOKafkaProducer | None) -> None:
        before = self.batches.pop(connection, None)
        if before is not None:
            before.close()  # its producer is stopping: what it has not had acknowledged fails (503)
        if producer is not None:
            self.batches[connection] = BatchProducer(
                producer, self.settings.produce_timeout_seconds, self.settings.linger_ms / 1000
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        path: str = scope["path"]
        if path in OPS_PATHS:
            if path == "/metrics" and self.settings.metrics_multiproc_dir:
                await _respond_metrics(send)  # every worker's, not only this one's
                return
            await self.ops(scope, receive, send)
            return
        if self.https_only and scope.get("scheme") != "https":
            message = (
                "transport-encryption is strict: events are accepted over HTTPS only "
                f"(port {self.settings.https_port})\n"
            )
            await _respond(send, Answer(403, message.encode()))
            return
        method = scope["method"]
        if method == "OPTIONS":
            await _respond(send, Answer(200), OPTIONS_HEADERS)
            return
        if method != "POST":
            await _respond(send, Answer(405, b"only POST is allowed\n"), [(b"allow", ALLOW.encode())])
            return
        ingress = self.handler.lookup(path)
        if ingress is None:
            if not self.contract.synced:
                # Until the contract is read, "no Broker" would be a guess: the client should come back.
                message = "the receiver is starting: the contract of ingresses is not loaded yet"
                await _respond(send, self.handler.unavailable(message))
            else:
                await _respond(send, Answer(404, f"no Broker, Channel or KafkaSink at {path}\n".encode()))
            return
        headers: dict[str, str] = {}
        content_length: int | None = None
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = value
            if name == "content-length" and value.isdigit():
                content_length = int(value)
        check: EventCheck | None = None
        if self._requires_token(ingress):
            refusal, check = await self._authenticate(headers.get("authorization"), ingress)
            if refusal is not None:
                await _respond(send, refusal)
                return
        if self.handler.too_large(content_length):
            await _respond(send, too_large(self.settings.max_event_bytes))
            return
        try:
            async with asyncio.timeout(self.settings.body_timeout_seconds):
                body = await _read_body(receive, self.settings.max_event_bytes)
        except TimeoutError:
            answer = body_timed_out(self.settings.body_timeout_seconds)
            await _respond(send, answer, [(b"connection", b"close")])
            return
        except _Disconnected:
            return  # nothing to answer, and nothing half-received is produced
        if body is None:
            await _respond(send, too_large(self.settings.max_event_bytes))
            return
        await _respond(send, await self.handler.handle(ingress, headers, body, check))

    async def _authenticate(
        self, authorization: str | None, ingress: Ingress
    ) -> tuple[Answer | None, EventCheck | None]:
        """(None, what the event must pass) when the sender's token is valid for the ingress's audience and
        an EventPolicy (or the default authorization mode) allows it; else (the answer to give, None)."""
        if self.verifier is None:  # fail closed: no token can be checked, so none is accepted
            message = (
                f"{ingress.kind} {ingress.namespace}/{ingress.name} requires an OIDC token "
                "(authentication-oidc), and this receiver has no issuer to verify it (KEVENTING_OIDC_ISSUER)"
            )
            return self.handler.unavailable(message), None
        if ingress.audience is None:
            message = f"{ingress.kind} {ingress.namespace}/{ingress.name} has no audience published yet"
            return self.handler.unavailable(message), None
        try:
            claims = await self.verifier.verify(authorization, ingress.audience)
        except Unauthenticated as err:
            # The description stays in the body: a header must not carry what the token's sender wrote.
            challenge = (("www-authenticate", 'Bearer error="invalid_token"'),)
            return Answer(401, f"{err}\n".encode(), challenge), None
        except IssuerUnavailable as err:
            return self.handler.unavailable(str(err)), None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            return Answer(401, b"the token has no sub: the sender cannot be told\n"), None
        decision = self.authorizer.decide(ingress, subject)
        if decision.refusal is not None:
            return Answer(403, f"{decision.refusal}\n".encode()), None
        return None, decision.check

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._tasks = [
                    asyncio.create_task(self._connect()),
                    asyncio.create_task(self._follow_contract()),
                    asyncio.create_task(self.event_types.run()),
                ]
                freeze_startup_heap()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                # Every batch queued is sent and answered (within the bound) before the producers stop.
                timeout = self.settings.shutdown_timeout_seconds
                await asyncio.gather(*(batches.flush(timeout) for batches in self.batches.values()))
                await self.producers.stop(timeout)
                await self.handler.transformer.close()  # EventTransforms' HTTP session to their sinks
                if self.handler.requests is not None:
                    self.handler.requests.stop()  # the reply readers
                if self.verifier is not None:
                    await self.verifier.close()
                if self.tracing is not None:
                    self.tracing.shutdown()  # exports the spans still queued
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _connect(self) -> None:
        """Start the producer, retrying while Kafka is unreachable; requests meanwhile get 503."""
        self.producer = await self.producers.start_default()

    async def _follow_contract(self) -> None:
        await self.contract.follow(
            self.settings.kafka_connection,
            self.settings.contract_topic,
            self.contract_keys,
            self.settings.control_plane_replication_factor,
        )

    async def _on_ingress(self, key: str, old: Ingress | None, new: Ingress | None) -> None:
        self.producers.use(key, new.connection if new is not None else None)
        if new is None:
            self.table.remove(key)
        else:
            self.table.put(new)


class _Disconnected(Exception):
    """The client went away before the whole body arrived."""


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None as soon as it exceeds ``limit`` (chunked uploads have no Content-Length)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond_metrics(send: Send) -> None:
    registry = CollectorRegistry()
    workers = MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(knative_view(workers.collect))
    body = generate_latest(registry)
    headers = [(b"content-type", CONTENT_TYPE_LATEST.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _respond(send: Send, answer: Answer, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")] if answer.plain_text else []
    headers.extend((k.encode(), v.encode()) for k, v in answer.headers)
    if extra:
        headers.extend(extra)
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
