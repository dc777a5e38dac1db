"""How the data plane reaches the Kubernetes API server (Kubernetes mode): with the pod's own ServiceAccount,
or with ``KUBECONFIG`` outside a pod. One client per process, made on first use, so that a data plane that
never needs the API server (local mode) never looks for a configuration, nor imports the client library (its
generated models are ~35 MiB of every process that loads them)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubernetes_asyncio import client as k8s


class KubeConfigUnavailable(Exception):
    """Neither the pod's ServiceAccount nor a kubeconfig says how to reach the API server."""


class KubeApi:
    def __init__(self, api: k8s.ApiClient | None = None) -> None:
        self._api = api

    async def client(self) -> k8s.ApiClient:
        if self._api is None:
            from kubernetes_asyncio import client as k8s
            from kubernetes_asyncio import config as k8s_config

            configuration = k8s.Configuration()
            try:
                if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
                    k8s_config.load_incluster_config(client_configuration=configuration)
                else:
                    await k8s_config.load_kube_config(client_configuration=configuration)
            except (k8s_config.ConfigException, OSError) as err:
                raise KubeConfigUnavailable(f"no Kubernetes configuration: {err}") from None
            self._api = k8s.ApiClient(configuration)
        return self._api

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None
