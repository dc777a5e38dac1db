"""How the operator reaches the API server: a kubeconfig (a context in it) or the pod's service account.

One configuration serves both clients the operator uses: kubernetes_asyncio for writes, and kopf's own
watch client, which gets the same server, CA and credentials through a login handler.
"""

from __future__ import annotations

from dataclasses import dataclass

import kopf
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config


@dataclass
class KubeAccess:
    configuration: k8s.Configuration
    api: k8s.ApiClient

    @classmethod
    async def load(cls, kubeconfig: str | None = None, context: str | None = None) -> KubeAccess:
        """In-cluster config when no kubeconfig is named and the pod has a service account."""
        configuration = k8s.Configuration()
        if kubeconfig is None:
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)
            except k8s_config.ConfigException:
                await k8s_config.load_kube_config(context=context, client_configuration=configuration)
        else:
            await k8s_config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
        return cls(configuration, k8s.ApiClient(configuration))

    def connection_info(self) -> kopf.ConnectionInfo:
        conf = self.configuration
        if not conf.host:
            raise ValueError("the Kubernetes configuration names no API server")
        token = (conf.api_key or {}).get("authorization") or (conf.api_key or {}).get("BearerToken")
        scheme = None
        if token and " " in token:
            scheme, token = token.split(" ", 1)
        return kopf.ConnectionInfo(
            server=conf.host,
            ca_path=conf.ssl_ca_cert,
            insecure=not conf.verify_ssl,
            scheme=scheme or ("Bearer" if token else None),
            token=token,
            certificate_path=conf.cert_file,
            private_key_path=conf.key_file,
        )

    async def close(self) -> None:
        await self.api.close()
