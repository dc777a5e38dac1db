"""keventing's webhooks, one HTTPS server: SinkBinding's mutating admission webhook (``/sinkbindings``),
which the API server calls for every Deployment, StatefulSet, DaemonSet, Job, CronJob and Pod being created
or updated, answering with a JSON patch that binds it to the SinkBinding whose subject it is; and the
conversion webhook of EventType's versions (``/convert``, Knative's v1beta1/v1beta2/v1beta3), which each
replica registers in the EventType CRD (keventing's, or Knative's own) with the same caBundle.

Every operator replica serves it, the standby too, since the webhook's Service selects them all: each keeps
its own view of the SinkBindings (:class:`BindingWatch`, a list and watch) and they share one serving
certificate, kept in a Secret (:func:`shared_certificate`): the first replica to start makes it (a CA and a
cert for the webhook's names, with the ``openssl`` CLI), the others read it, and a certificate near its end
or lacking a name is replaced. Each replica server-side applies the ``MutatingWebhookConfiguration``
carrying that CA as ``caBundle`` (the same document from every replica); the API server reaches the webhook
through its Service in the cluster, or at a configured URL (a process on loopback, as in the tests), and
applies it again every minute. The registrations are owned by the chart's controller ClusterRole
(``KEVENTING_WEBHOOK_OWNER``, see :mod:`controller.kubernetes.owners`), so that ``helm uninstall`` removes
them with it. The failure policy is Ignore: an operator that is down must not stop every workload in the
cluster from being created, and the binder patches existing subjects anyway.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import watch
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.kubernetes import crossnamespace
from controller.kubernetes.api import APPLY_PATCH, MERGE_PATCH
from controller.kubernetes.bindings import (
    SUBJECT_KINDS,
    Binding,
    SubjectInvalid,
    binding_of,
    desired_env,
    pod_spec_patch,
)
from controller.kubernetes.objects import key_of
from controller.kubernetes.owners import as_models, owner_references
from controller.settings import ControllerSettings
from keventing.ops import serve
from keventing.resources import ResourceKey
from keventing.resources.eventtype import convert_document

log = logging.getLogger("keventing.controller.webhook")

WEBHOOK_NAME = "sinkbindings.webhook.sources.knative.dev"
WEBHOOK_PATH = "/sinkbindings"
CONVERT_PATH = "/convert"
# The CRDs whose versions the conversion webhook converts, and how.
CONVERSIONS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    "eventtypes.eventing.knative.dev": convert_document
}
FIELD_MANAGER = "keventing-controller"
CERTIFICATE_FILES = ("ca.crt", "tls.crt", "tls.key")
# A shared certificate with less than this left is replaced (made for ten years, so this means tampering).
RENEW_BEFORE_SECONDS = 30 * 24 * 3600
WATCH_SECONDS = 300


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
    """A new CA and a serving certificate signed by it for ``dns_names`` and ``ips``, in ``directory``."""
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


def _openssl(args: Sequence[str], cwd: Path) -> str:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CertificateError("the SinkBinding webhook's certificate is made with `openssl`, not on PATH")
    done = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise CertificateError(f"`openssl {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout


def certificate_fits(certificate: ServingCertificate, dns_names: Sequence[str], ips: Sequence[str]) -> bool:
    """Whether the certificate is signed by its CA, names every one of ``dns_names`` and ``ips``, and has
    more than :data:`RENEW_BEFORE_SECONDS` left."""
    cwd = certificate.cert.parent
    try:
        _openssl(["verify", "-CAfile", str(certificate.ca_cert), str(certificate.cert)], cwd)
        _openssl(
            ["x509", "-in", str(certificate.cert), "-noout", "-checkend", str(RENEW_BEFORE_SECONDS)], cwd
        )
        sans = _openssl(["x509", "-in", str(certificate.cert), "-noout", "-ext", "subjectAltName"], cwd)
    except CertificateError:
        return False
    named = {part.strip() for part in sans.replace("\n", ",").split(",")}
    return all(f"DNS:{n}" in named for n in dns_names) and all(f"IP Address:{ip}" in named for ip in ips)


async def shared_certificate(
    api: k8s.ApiClient,
    namespace: str,
    secret_name: str,
    directory: Path,
    dns_names: Sequence[str],
    ips: Sequence[str],
    owners: Sequence[dict[str, Any]] = (),
) -> ServingCertificate:
    """The webhook's serving certificate, the same for every replica: read from the Secret
    ``namespace/secret_name`` into ``directory``, or made there and stored (owned by ``owners``) when the
    Secret is missing or its certificate does not fit. Two replicas racing to make it both end with the one
    the API server kept."""
    core = k8s.CoreV1Api(api)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    certificate = ServingCertificate(*(directory / name for name in CERTIFICATE_FILES))
    for _ in range(5):
        try:
            secret = await core.read_namespaced_secret(secret_name, namespace)
        except k8s.ApiException as err:
            if err.status != 404:
                raise
            secret = None
        data = (secret.data or {}) if secret is not None else {}
        if all(data.get(name) for name in CERTIFICATE_FILES):
            for name in CERTIFICATE_FILES:
                path = directory / name
                path.write_bytes(base64.b64decode(data[name]))
                path.chmod(0o600)
            if certificate_fits(certificate, dns_names, ips):
                return certificate
        made = await asyncio.to_thread(make_certificate, directory / "new", dns_names, ips)
        body = k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(
                name=secret_name,
                namespace=namespace,
                labels={"app.kubernetes.io/component": "webhook"},
                resource_version=secret.metadata.resource_version if secret is not None else None,
                owner_references=as_models(list(owners)) or None,
            ),
            type="kubernetes.io/tls",
            data={
                name: base64.b64encode(path.read_bytes()).decode()
                for name, path in zip(CERTIFICATE_FILES, (made.ca_cert, made.cert, made.key), strict=True)
            },
        )
        try:
            if secret is None:
                await core.create_namespaced_secret(namespace, body)
            else:  # only over the version read: a replica that replaced it first wins
                await core.replace_namespaced_secret(secret_name, namespace, body)
        except k8s.ApiException as err:
            if err.status != 409:
                raise
            continue  # another replica stored one first: use that one
        finally:
            shutil.rmtree(directory / "new", ignore_errors=True)
        log.info("stored a new webhook certificate", extra={"secret": f"{namespace}/{secret_name}"})
    raise CertificateError(f"the webhook's certificate Secret {namespace}/{secret_name} keeps changing")


# -------------------------------------------------------------------------------------------- bindings


class BindingWatch:
    """The SinkBindings as one replica sees them (a list, then a watch, again after any error): what its
    webhook binds admitted subjects to. ``namespaces`` empty means every namespace."""

    def __init__(self, api: k8s.ApiClient, namespaces: Sequence[str]) -> None:
        self.api = k8s.CustomObjectsApi(api)
        self.namespaces = list(namespaces)
        self.bindings: dict[ResourceKey, Binding] = {}
        self.listed = asyncio.Event()

    def current(self) -> list[Binding]:
        return list(self.bindings.values())

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for namespace in self.namespaces or [""]:
                tasks.create_task(self._follow(namespace))

    def _list_call(self, namespace: str) -> tuple[Callable[..., Any], tuple[str, ...]]:
        if namespace:
            return self.api.list_namespaced_custom_object, (
                "sources.knative.dev",
                "v1",
                namespace,
                "sinkbindings",
            )
        return self.api.list_cluster_custom_object, ("sources.knative.dev", "v1", "sinkbindings")

    def _set(self, obj: dict[str, Any], deleted: bool = False) -> None:
        obj.setdefault("kind", "SinkBinding")
        key = key_of(obj)
        self.bindings.pop(key, None)
        if deleted or (obj.get("metadata") or {}).get("deletionTimestamp"):
            return
        try:
            self.bindings[key] = binding_of(obj)
        except SubjectInvalid:
            pass  # the operator says so in the binding's status

    async def _follow(self, namespace: str) -> None:
        call, args = self._list_call(namespace)
        while True:
            try:
                listing = await call(*args)
                seen = set()
                for item in listing.get("items") or []:
                    self._set(item)
                    seen.add(key_of(item))
                for key in [
                    k for k in self.bindings if k not in seen and (not namespace or k.namespace == namespace)
                ]:
                    del self.bindings[key]
                self.listed.set()
                stream = watch.Watch()
                try:
                    async for event in stream.stream(
                        call,
                        *args,
                        resource_version=(listing.get("metadata") or {}).get("resourceVersion"),
                        timeout_seconds=WATCH_SECONDS,
                    ):
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            self._set(event["object"], deleted=event["type"] == "DELETED")
                finally:
                    await stream.close()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the API server restarting, a 410 Gone: list again shortly
                log.warning(
                    "cannot watch SinkBindings", extra={"namespace": namespace or "*", "reason": str(err)}
                )
                await asyncio.sleep(1)


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


def conversion_response(review: dict[str, Any]) -> dict[str, Any]:
    """The ConversionReview (apiextensions.k8s.io/v1) answering ``review``: every object in the desired
    version, or a Failure saying which object could not be converted and why."""
    request = review.get("request") or {}
    desired = str(request.get("desiredAPIVersion") or "")
    response: dict[str, Any] = {"uid": request.get("uid", "")}
    converted = []
    try:
        for obj in request.get("objects") or []:
            kind = obj.get("kind") if isinstance(obj, dict) else None
            convert = next(
                (c for crd, c in CONVERSIONS.items() if crd.split(".", 1)[0] == f"{kind}s".lower()), None
            )
            if convert is None:
                raise ValueError(f"keventing converts no {kind!r} objects")
            converted.append(convert(obj, desired))
    except ValueError as err:
        response["result"] = {"status": "Failure", "message": str(err)}
    else:
        response["convertedObjects"] = converted
        response["result"] = {"status": "Success"}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview", "response": response}


Validate = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def webhook_app(bindings: Callable[[], Iterable[Binding]], validate: Validate | None = None) -> Starlette:
    async def review(request: Request, kind: str) -> dict[str, Any] | Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as err:
            return JSONResponse({"error": f"expected a{kind} as JSON: {err}"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": f"expected a{kind} object"}, status_code=400)
        return body

    async def admit(request: Request) -> Response:
        body = await review(request, "n AdmissionReview")
        if isinstance(body, Response):
            return body
        return Response(orjson.dumps(admission_response(body, bindings())), media_type="application/json")

    async def convert(request: Request) -> Response:
        body = await review(request, " ConversionReview")
        if isinstance(body, Response):
            return body
        return Response(orjson.dumps(conversion_response(body)), media_type="application/json")

    async def cross_namespace(request: Request) -> Response:
        body = await review(request, "n AdmissionReview")
        if isinstance(body, Response):
            return body
        assert validate is not None
        return Response(orjson.dumps(await validate(body)), media_type="application/json")

    routes = [
        Route(WEBHOOK_PATH, admit, methods=["POST"]),
        Route(CONVERT_PATH, convert, methods=["POST"]),
    ]
    if validate is not None:
        routes.append(Route(crossnamespace.VALIDATE_PATH, cross_namespace, methods=["POST"]))
    return Starlette(routes=routes)


async def serve_webhook(
    bindings: Callable[[], Iterable[Binding]],
    certificate: ServingCertificate,
    host: str,
    port: int,
    validate: Validate | None = None,
) -> None:
    await serve(
        webhook_app(bindings, validate),
        host,
        port,
        ssl_certfile=str(certificate.cert),
        ssl_keyfile=str(certificate.key),
    )


# ------------------------------------------------------------------------------------- configuration


def client_config(
    ca_bundle: str, path: str, *, url: str | None, service: tuple[str, str, int] | None
) -> dict[str, Any]:
    """Where the API server reaches the webhook's ``path``: at ``url``, else through the Service."""
    config: dict[str, Any] = {"caBundle": ca_bundle}
    if url is not None:
        config["url"] = url.rstrip("/") + path
    elif service is not None:
        namespace, service_name, port = service
        config["service"] = {"namespace": namespace, "name": service_name, "path": path, "port": port}
    else:
        raise ValueError("the webhook needs a URL or a Service the API server reaches it at")
    return config


def webhook_configuration(
    name: str, ca_bundle: str, *, url: str | None, service: tuple[str, str, int] | None
) -> dict[str, Any]:
    """The MutatingWebhookConfiguration that sends subjects' admissions to the webhook (by URL or Service)."""
    subjects_client = client_config(ca_bundle, WEBHOOK_PATH, url=url, service=service)
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
                "clientConfig": subjects_client,
                "rules": rules,
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 10,
                "reinvocationPolicy": "IfNeeded",
            }
        ],
    }


def conversion_patch(
    ca_bundle: str, *, url: str | None, service: tuple[str, str, int] | None
) -> dict[str, Any]:
    """The merge patch pointing a CRD's conversion at this webhook."""
    # A merge patch: the way not taken is set to null, so that the CRD does not end with both.
    client_config: dict[str, Any] = {"caBundle": ca_bundle, "url": None, "service": None}
    if url is not None:
        client_config["url"] = url.rstrip("/") + CONVERT_PATH
    elif service is not None:
        namespace, name, port = service
        client_config["service"] = {"namespace": namespace, "name": name, "path": CONVERT_PATH, "port": port}
    else:
        raise ValueError("the webhook needs a URL or a Service the API server reaches it at")
    return {
        "spec": {
            "conversion": {
                "strategy": "Webhook",
                "webhook": {"conversionReviewVersions": ["v1"], "clientConfig": client_config},
            }
        }
    }


async def register_conversions(api: k8s.ApiClient, patch: dict[str, Any]) -> None:
    """Point every CRD keventing converts, that the cluster has, at the webhook (patched, not applied: the
    CRD stays whoever installed it's, keventing only owns where its conversions go)."""
    extensions = k8s.ApiextensionsV1Api(api)
    for name in CONVERSIONS:
        try:
            await extensions.patch_custom_resource_definition(name, patch, **MERGE_PATCH)
        except k8s.ApiException as err:
            if err.status == 404:
                log.info("no CRD to convert for", extra={"crd": name})
            else:  # the webhook still serves admissions; the CRD's other versions stay unreadable
                log.error(
                    "cannot register the conversion webhook",
                    extra={
                        "crd": name,
                        "status": err.status,
                        "reason": err.reason,
                        "body": str(err.body)[:500],
                    },
                )


async def apply_webhook_configuration(api: k8s.ApiClient, configuration: dict[str, Any]) -> None:
    """Server-side apply a Mutating- or ValidatingWebhookConfiguration."""
    admission = k8s.AdmissionregistrationV1Api(api)
    patch = (
        admission.patch_validating_webhook_configuration
        if configuration["kind"] == "ValidatingWebhookConfiguration"
        else admission.patch_mutating_webhook_configuration
    )
    await patch(
        configuration["metadata"]["name"],
        configuration,
        field_manager=FIELD_MANAGER,
        force=True,
        **APPLY_PATCH,
    )


def owned(configuration: dict[str, Any], owners: list[dict[str, Any]]) -> dict[str, Any]:
    """``configuration`` with ``owners`` as its owner references."""
    if not owners:
        return configuration
    return {**configuration, "metadata": {**configuration["metadata"], "ownerReferences": owners}}


async def register(
    api: k8s.ApiClient,
    configurations: Sequence[dict[str, Any]],
    conversions: dict[str, Any],
    owners: list[dict[str, Any]] | None,
    *,
    again: bool = False,
) -> None:
    """Apply the admission registrations (owned by ``owners``, as :func:`owner_references` read them) and
    point the CRDs' conversions here. At start an owner that cannot be read (None) is no reason to leave
    SinkBindings unbound: registered without one (they then outlive the release). ``again``, a missing owner
    means the release is being uninstalled: nothing is applied, lest a registration the garbage collector
    just deleted come back owned by nobody."""
    if owners is None:
        if again:
            return
        log.warning("registering the webhook without an owner: it will outlive the release")
        owners = []
    for configuration in configurations:
        await apply_webhook_configuration(api, owned(configuration, owners))
    await register_conversions(api, conversions)


async def keep_registered(
    api: k8s.ApiClient,
    configurations: Sequence[dict[str, Any]],
    conversions: dict[str, Any],
    owner: str,
    every: float,
) -> None:
    """Apply the registrations again every ``every`` s: one deleted by hand is back within that time."""
    while True:
        await asyncio.sleep(every)
        try:
            owners = await owner_references(api, owner)
            await register(api, configurations, conversions, owners, again=True)
        except Exception as err:  # the API server unreachable or refusing: the webhook keeps serving
            log.warning(
                "cannot apply the webhook registrations again; will retry", extra={"error": repr(err)}
            )


async def run_webhook(api: k8s.ApiClient, settings: ControllerSettings) -> None:
    """Serve the admission webhook (when a port is configured) with the shared certificate and this
    replica's own view of the SinkBindings, and register it with the API server."""
    if settings.webhook_port is None:
        log.info("no KEVENTING_WEBHOOK_PORT: SinkBindings bind existing subjects only")
        await asyncio.Event().wait()
        return
    service = settings.webhook_service
    namespace = settings.webhook_namespace
    names = [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local", "localhost"]
    directory = Path(tempfile.mkdtemp(prefix="keventing-webhook-"))
    try:
        # A namespaced object may have a cluster-scoped owner: the Secret goes with the release too.
        owners = await owner_references(api, settings.webhook_owner)  # read once: the Secret's, the start's
        certificate = await shared_certificate(
            api, namespace, settings.webhook_secret, directory, names, ["127.0.0.1"], owners or []
        )
        configuration = webhook_configuration(
            settings.webhook_configuration,
            certificate.ca_bundle,
            url=settings.webhook_url,
            service=(namespace, service, 443),
        )
        conversions = conversion_patch(
            certificate.ca_bundle, url=settings.webhook_url, service=(namespace, service, 443)
        )
        validating = crossnamespace.validating_configuration(
            settings.webhook_configuration,
            client_config(
                certificate.ca_bundle,
                crossnamespace.VALIDATE_PATH,
                url=settings.webhook_url,
                service=(namespace, service, 443),
            ),
        )

        async def validate(body: dict[str, Any]) -> dict[str, Any]:
            return await crossnamespace.review(api, settings.system_namespace, body)

        bindings = BindingWatch(api, settings.namespace_list)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(bindings.run())
            await bindings.listed.wait()
            tasks.create_task(
                serve_webhook(
                    bindings.current, certificate, settings.http_host, settings.webhook_port, validate
                )
            )
            registrations = (configuration, validating)
            await register(api, registrations, conversions, owners)
            tasks.create_task(
                keep_registered(
                    api, registrations, conversions, settings.webhook_owner, settings.webhook_reapply_seconds
                )
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
