"""A namespace being deleted refuses new objects, and the operator recognises that refusal as such."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from helpers import kafka_channel_doc
from kubernetes_asyncio import client

from controller.kubernetes.api import MERGE_PATCH, apply_custom_object
from controller.kubernetes.operator import FIELD_MANAGER, namespace_terminating

pytestmark = pytest.mark.kubernetes

HOLD = "keventing.test/hold"


async def test_creating_in_a_terminating_namespace_is_recognised_and_elsewhere_is_not(
    kube_api: client.ApiClient, operator_kubeconfig: Path, namespace: str
) -> None:
    del operator_kubeconfig  # the CRDs are installed
    core = client.CoreV1Api(kube_api)
    custom = client.CustomObjectsApi(kube_api)
    doomed = f"test-doomed-{uuid.uuid4().hex[:8]}"
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=doomed)))
    held = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="held", finalizers=[HOLD]))
    await core.create_namespaced_config_map(doomed, held)
    try:
        await core.delete_namespace(doomed)  # stays Terminating while the ConfigMap's finalizer holds it
        for _ in range(100):
            if (await core.read_namespace(doomed)).status.phase == "Terminating":
                break
            await asyncio.sleep(0.1)
        with pytest.raises(client.ApiException) as refused:
            await apply_custom_object(custom, kafka_channel_doc("c", doomed), FIELD_MANAGER)
        assert namespace_terminating(refused.value), refused.value.body

        # Any other refusal is not taken for it: a name the API server rejects, in a live namespace.
        with pytest.raises(client.ApiException) as invalid:
            await apply_custom_object(custom, kafka_channel_doc("Not_A_Name", namespace), FIELD_MANAGER)
        assert invalid.value.status == 422
        assert not namespace_terminating(invalid.value)
        await apply_custom_object(custom, kafka_channel_doc("c", namespace), FIELD_MANAGER)
        stored = await custom.get_namespaced_custom_object(
            "messaging.knative.dev", "v1beta1", namespace, "kafkachannels", "c"
        )
        assert stored["metadata"]["name"] == "c"
    finally:
        patch = {"metadata": {"finalizers": None}}
        await core.patch_namespaced_config_map("held", doomed, patch, **MERGE_PATCH)
