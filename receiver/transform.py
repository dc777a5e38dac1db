"""EventTransform at the receiver: the event reshaped by its JSONata expression and answered at once, or
sent to the transform's sink and the sink's answer relayed (its reply transformed or discarded).

Nothing is produced to Kafka: an EventTransform stores nothing, like Knative's. The caller (a Trigger's
or Subscription's delivery, a source) owns retries, so failures keep their meaning: the expression failing
or not yielding a CloudEvent is a 500 that says why, an unreachable sink a 502, the sink's own non-2xx
answer is passed on. Expressions are compiled once per contract change (:meth:`Transformer.compiled`).
"""

from __future__ import annotations

import base64
import logging
import ssl
from typing import Any

import aiohttp
import orjson

from keventing import events
from keventing.contract import Transform
from keventing.resources.transforms import compile_jsonata
from keventing.tls import ClientTrust, TrustUnusable
from keventing.tokens import TokenSource, TokenUnavailable
from receiver.answer import Answer

log = logging.getLogger("keventing.receiver.transform")
# Compiled expressions kept at most (one per distinct expression in the contract).
MAX_COMPILED = 10_000


class TransformFailed(Exception):
    """The expression failed on this event, or its result is not a CloudEvent."""


def event_document(event: events.Event) -> dict[str, Any]:
    """The event as JSONata sees it (the JSON event format): attributes, and ``data`` as JSON when it is
    JSON, as text when it is text, else ``data_base64``."""
    document: dict[str, Any] = dict(event.attributes)
    data = event.data
    if data is None:
        return document
    if events.is_json_content_type(event.attributes.get("datacontenttype")):
        try:
            document["data"] = orjson.loads(data)
            return document
        except orjson.JSONDecodeError:
            pass
    try:
        document["data"] = data.decode("utf-8")
    except UnicodeDecodeError:
        document["data_base64"] = base64.b64encode(data).decode()
    return document


class Transformer:
    def __init__(
        self, timeout: float, trust: ClientTrust | None = None, tokens: TokenSource | None = None
    ) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        # An https sink is verified (system CAs, trust bundle, its CACerts); a sink with an audience gets a token.
        self.trust = trust or ClientTrust()
        self.tokens = tokens
        self._compiled: dict[str, Any] = {}
        self._session: aiohttp.ClientSession | None = None

    def compiled(self, expression: str) -> Any:
        """The compiled expression: compiled the first time it is seen (a contract change), then reused."""
        found = self._compiled.get(expression)
        if found is None:
            if len(self._compiled) >= MAX_COMPILED:  # expressions of transforms long gone: start afresh
                self._compiled.clear()
            found = self._compiled[expression] = compile_jsonata(expression, "expression")
        return found

    def apply(self, expression: str, event: events.Event) -> events.Event:
        try:
            result = self.compiled(expression).evaluate(event_document(event))
        except Exception as err:  # JSONata's runtime errors (a bad function call, a type mismatch)
            raise TransformFailed(f"the JSONata expression failed on this event: {err}") from None
        if not isinstance(result, dict):
            raise TransformFailed(
                f"the JSONata expression must yield a CloudEvent object, got {type(result).__name__}"
            )
        try:
            return events.from_structured_json(orjson.dumps(result))
        except (events.InvalidEvent, TypeError) as err:
            raise TransformFailed(
                f"the JSONata expression's result is not a valid CloudEvent: {err}"
            ) from None

    async def handle(self, transform: Transform, event: events.Event) -> Answer:
        try:
            transformed = self.apply(transform.expression, event)
        except TransformFailed as err:
            return Answer(500, f"{err}\n".encode())
        if transform.sink is None:
            return _event_answer(200, transformed)
        return await self._forward(transform, transformed)

    async def _forward(self, transform: Transform, event: events.Event) -> Answer:
        assert transform.sink is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        headers, body = events.to_http_binary(event)
        context: ssl.SSLContext | bool = True
        try:
            if transform.sink[:6].lower() == "https:":
                context = self.trust.context(transform.sink_ca_certs)
            if transform.sink_audience is not None and self.tokens is not None:
                token = await self.tokens.token(transform.sink_audience)
                headers = {**headers, "authorization": f"Bearer {token}"}
        except (TrustUnusable, TokenUnavailable) as err:
            return Answer(502, f"the transform's sink {transform.sink} cannot be called: {err}\n".encode())
        try:
            async with self._session.post(
                transform.sink, data=body, headers=headers, timeout=self.timeout, ssl=context
            ) as response:
                payload = await response.read()
                status = response.status
                reply_headers = {k.lower(): v for k, v in response.headers.items()}
        except (aiohttp.ClientError, TimeoutError) as err:
            return Answer(
                502, f"the transform's sink {transform.sink} could not be reached: {err!r}\n".encode()
            )
        if not 200 <= status < 300:
            return Answer(status, payload)
        if transform.reply_discard or not (payload or "ce-specversion" in reply_headers):
            return Answer(202)
        try:
            reply = events.from_http(reply_headers, payload)
        except events.InvalidEvent as err:
            return Answer(
                502,
                f"the transform's sink answered with something that is not a CloudEvent: {err}\n".encode(),
            )
        if transform.reply_expression is not None:
            try:
                reply = self.apply(transform.reply_expression, reply)
            except TransformFailed as err:
                return Answer(500, f"reply: {err}\n".encode())
        return _event_answer(200, reply)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _event_answer(status: int, event: events.Event) -> Answer:
    headers, body = events.to_http_binary(event)
    return Answer(status, body, tuple(headers.items()))
