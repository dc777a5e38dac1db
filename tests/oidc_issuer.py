"""A small OIDC issuer for the tests: its own RSA keys, a discovery document and a JWKS served over HTTP
from a thread, tokens signed with PyJWT; keys can be rotated while it runs."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kev.kafka.embedded import free_port


def namespace_of(audience: str) -> str:
    parts = audience.split("/")
    return parts[2] if len(parts) == 4 else "tests"


class SigningKey:
    def __init__(self) -> None:
        self.kid = uuid.uuid4().hex[:12]
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def jwk(self) -> dict[str, Any]:
        public: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}

    @property
    def pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


class JwksIssuer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keys = [SigningKey()]
        self.jwks_requests = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def key(self) -> SigningKey:
        return self.keys[-1]

    def rotate(self) -> SigningKey:
        """A new signing key, published beside the old one (as issuers do while old tokens live)."""
        self.keys.append(SigningKey())
        return self.key

    def token(self, audience: str, key: SigningKey | None = None, **claims: Any) -> str:
        """A token for ``audience``; its sub is service account ``sender`` of the namespace a Knative
        audience (``<group>/<kind>/<namespace>/<name>``) names, so the default authorization mode allows it."""
        key = key or self.key
        now = int(time.time())
        body = {"iss": self.url, "aud": audience, "sub": f"system:serviceaccount:{namespace_of(audience)}:sender",
                "iat": now, "exp": now + 600, **claims}  # fmt: skip
        return jwt.encode(body, key.private, algorithm="RS256", headers={"kid": key.kid})

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        if self._runner is None:
            return  # stopped already
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/keys", self._jwks)
        runner = self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response({"issuer": self.url, "jwks_uri": f"{self.url}/keys",
                                  "id_token_signing_alg_values_supported": ["RS256"]})  # fmt: skip

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_requests += 1
        return web.json_response({"keys": [k.jwk for k in self.keys]})
