"""SinkBinding's mutating admission webhook: an HTTPS endpoint the API server calls for every Deployment,
StatefulSet, DaemonSet, Job, CronJob and Pod being created or updated, answering with a JSON patch that
binds it to the SinkBinding whose subject it is.

The operator makes its own serving certificate (a throwaway CA and a cert for the webhook's names, with the
``openssl`` CLI) and server-side applies the ``MutatingWebhookConfiguration`` carrying that CA as
``caBundle``; the API server reaches the webhook through its Service in the cluster, or at a configured URL
(a process on loopback, as in the tests). The failure policy is Ignore: an operator that is down must not
stop every workload in the cluster from being created, and the binder patches existing subjects anyway.
"""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from kubernetes_asyncio import client as k8s
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.kubernetes.api import APPLY_PATCH
from controller.kubernetes.bindings import SUBJECT_KINDS, Binding, desired_env, pod_spec_patch
from keventing.ops import serve

log = logging.getLogger("keventing.controller.webhook")

WEBHOOK_NAME = "sinkbindings.webhook.sources.knative.dev"
WEBHOOK_PATH = "/sinkbindings"
FIELD_MANAGER = "keventing-controller"


class CertificateError(RuntimeError):
    """The webhook's certificate could not be made (``openssl`` missing or failing)."""


@dataclass(frozen=True)
class ServingCertificate:
    ca_cert: Path
    cert: Path
    key: Path

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.ca_cert.read_bytes()).decode()


def make_certificate(directory: Path, dns_names: Sequence[str], ips: Sequence[str]) -> ServingCertificate:
    """A new CA and a serving certificate signed by it for ``dns_names`` and ``ips``, in ``directory``.

    Made afresh at every start: the configuration's caBundle is applied from the same run, so nothing
    needs to survive a restart.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    rsa = ["-newkey", "rsa:2048", "-nodes"]
    _openssl(["req", "-x509", *rsa, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
              "-subj", "/CN=keventing-webhook-ca"], directory)  # fmt: skip
    _openssl(
        ["req", *rsa, "-keyout", "tls.key", "-out", "tls.csr", "-subj", f"/CN={dns_names[0]}"], directory
    )
    sans = [f"DNS:{n}" for n in dns_names] + [f"IP:{ip}" for ip in ips]
    (directory / "tls.ext").write_text(
        f"subjectAltName={','.join(sans)}\n"
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(["x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
              "-out", "tls.crt", "-days", "3650", "-extfile", "tls.ext"], directory)  # fmt: skip
    return ServingCertificate(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")


def _openssl(args: Sequence[str], cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CertificateError("the SinkBinding webhook's certificate is made with `openssl`, not on PATH")
    done = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise CertificateError(f"`openssl {' '.join(args)}` failed: {done.stderr.strip()}")


# ------------------------------------------------------------------------------------------ admission


def admission_response(review: dict[str, Any], bindings: Iterable[Binding]) -> dict[str, Any]:
    """The AdmissionReview (admission.k8s.io/v1) answering ``review``: always allowed, patched when the
    object is a bound subject. Objects no binding names are left as they are (never unbound here: a
    deleted binding's subjects are unbound by the binder, which the webhook then lets through)."""
    request = review.get("request") or {}
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": True}
    obj = request.get("object") or {}
    kind = SUBJECT_KINDS.get(obj.get("kind", ""))
    if kind is not None and request.get("operation") in ("CREATE", "UPDATE"):
        obj.setdefault("metadata", {}).setdefault("namespace", request.get("namespace"))
        env = desired_env(obj, bindings)
        patch = pod_spec_patch(obj, kind, env) if env is not None else []
        if patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(orjson.dumps(patch)).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def webhook_app(bindings: Callable[[], Iterable[Binding]]) -> Starlette:
    async def admit(request: Request) -> Response:
        try:
            review = orjson.loads(await request.body())
        except orjson.JSONDecodeError as err:
            return JSONResponse({"error": f"expected an AdmissionReview as JSON: {err}"}, status_code=400)
        if not isinstance(review, dict):
            return JSONResponse({"error": "expected an AdmissionReview object"}, status_code=400)
        return Response(orjson.dumps(admission_response(review, bindings())), media_type="application/json")

    return Starlette(routes=[Route(WEBHOOK_PATH, admit, methods=["POST"])])


async def serve_webhook(
    bindings: Callable[[], Iterable[Binding]], certificate: ServingCertificate, host: str, port: int
) -> None:
    await serve(
        webhook_app(bindings),
        host,
        port,
        ssl_certfile=str(certificate.cert),
        ssl_keyfile=str(certificate.key),
    )


# ------------------------------------------------------------------------------------- configuration


def webhook_configuration(
    name: str, ca_bundle: str, *, url: str | None, service: tuple[str, str, int] | None
) -> dict[str, Any]:
    """The MutatingWebhookConfiguration that sends subjects' admissions to the webhook (by URL or Service)."""
    client_config: dict[str, Any] = {"caBundle": ca_bundle}
    if url is not None:
        client_config["url"] = url.rstrip("/") + WEBHOOK_PATH
    elif service is not None:
        namespace, service_name, port = service
        client_config["service"] = {
            "namespace": namespace,
            "name": service_name,
            "path": WEBHOOK_PATH,
            "port": port,
        }
    else:
        raise ValueError("the webhook needs a URL or a Service the API server reaches it at")
    groups: dict[tuple[str, str], list[str]] = {}
    for kind in SUBJECT_KINDS.values():
        groups.setdefault((kind.group, kind.version), []).append(kind.plural)
    rules = [
        {
            "apiGroups": [group],
            "apiVersions": [version],
            "resources": plurals,
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
        for (group, version), plurals in sorted(groups.items())
    ]
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "clientConfig": client_config,
                "rules": rules,
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 10,
                "reinvocationPolicy": "IfNeeded",
            }
        ],
    }


async def apply_webhook_configuration(api: k8s.ApiClient, configuration: dict[str, Any]) -> None:
    await k8s.AdmissionregistrationV1Api(api).patch_mutating_webhook_configuration(
        configuration["metadata"]["name"],
        configuration,
        field_manager=FIELD_MANAGER,
        force=True,
        **APPLY_PATCH,
    )
