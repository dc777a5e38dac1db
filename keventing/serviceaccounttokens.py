"""OIDC tokens of Kubernetes ServiceAccounts (authentication-oidc in Kubernetes mode): the dispatcher asks the
API server's TokenRequest API for a token of the egress's ServiceAccount, bound to the destination's
audience, as Knative's dispatchers do. Tokens are cached per (namespace, account, audience) and renewed a
minute before they expire (:class:`keventing.tokens.TokenCache`).

The API server is reached with the pod's own ServiceAccount (it needs ``create`` on
``serviceaccounts/token``), or with ``KUBECONFIG`` outside a pod.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp

from keventing.contract import ServiceAccount
from keventing.kubeapi import KubeApi, KubeConfigUnavailable
from keventing.tokens import TokenCache, TokenSource, TokenUnavailable

if TYPE_CHECKING:
    from kubernetes_asyncio import client as k8s

# The lifetime asked for: the API server's minimum (it may grant more); renewed a minute before its end.
EXPIRATION_SECONDS = 600


class ServiceAccountTokenSource:
    """Tokens by TokenRequest for a destination whose sender has an identity; ``fallback`` for the others
    (the dispatcher's token command, if configured)."""

    def __init__(
        self, fallback: TokenSource | None = None, api: k8s.ApiClient | KubeApi | None = None
    ) -> None:
        self.fallback = fallback
        self.api = api if isinstance(api, KubeApi) else KubeApi(api)
        self._cache: TokenCache[tuple[str, str, str]] = TokenCache(self._request)

    async def token(self, audience: str, identity: ServiceAccount | None = None) -> str:
        if identity is None:
            if self.fallback is None:
                raise TokenUnavailable(
                    "the sender has no identity of its own and KEVENTING_OIDC_TOKEN_COMMAND is not set"
                )
            return await self.fallback.token(audience)
        return await self._cache.get((identity.namespace, identity.name, audience))

    async def _request(self, key: tuple[str, str, str]) -> str:
        from kubernetes_asyncio import client as k8s  # only once a token is asked for (see keventing.kubeapi)

        namespace, name, audience = key
        try:
            core = k8s.CoreV1Api(await self.api.client())
        except KubeConfigUnavailable as err:
            raise TokenUnavailable(f"TokenRequest: {err}") from None
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[audience], expiration_seconds=EXPIRATION_SECONDS)
        )
        try:
            answer = await core.create_namespaced_service_account_token(name, namespace, request)
        except k8s.ApiException as err:
            raise TokenUnavailable(
                f'TokenRequest for ServiceAccount "{name}" in namespace "{namespace}" failed: '
                f"{err.status} {err.reason}"
            ) from None
        except (aiohttp.ClientError, TimeoutError) as err:
            raise TokenUnavailable(f"TokenRequest: the API server cannot be reached: {err}") from None
        token = answer.status.token if answer.status is not None else None
        if not token:
            raise TokenUnavailable(f'TokenRequest for ServiceAccount "{name}" returned no token')
        return str(token)

    async def close(self) -> None:
        await self.api.close()
