"""ApiServerSource: watches the Kubernetes API as the source's service account and sends Knative's events.

Every watch, list and permission check is made *as* ``system:serviceaccount:<namespace>:<serviceAccountName>``
(impersonation), so a source sees exactly what its account may see and never what the runner's own account
may. Before watching, a SelfSubjectAccessReview per resource, namespace and verb (list, watch) checks the
account; a missing permission makes the source not Ready (``SufficientPermissions`` False, naming it) until
a later check passes. The events are Knative's: ``dev.knative.apiserver.{resource,ref}.{add,update,delete}``,
source = the API server's URL, subject = the object's self link, extensions ``kind``, ``name``,
``namespace``. As in Knative, objects that exist when a watch starts send nothing; after a watch expires,
the relist sends what changed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from keventing import events
from keventing.contract import ApiServerWatch, Source, WatchedResource
from keventing.filters import Filter, compile_trigger_filter
from keventing.sourcereports import ReportedCondition, SourceReport

log = logging.getLogger("keventing.sources.apiserver")

Verb = Literal["add", "update", "delete"]
_WATCH_VERBS: dict[str, Verb] = {"ADDED": "add", "MODIFIED": "update", "DELETED": "delete"}
_RESERVED = frozenset({"specversion", "id", "type", "source"})
CHECKED_VERBS = ("list", "watch")
WATCH_TIMEOUT_SECONDS = 300


# ------------------------------------------------------------------------------------- the events


def guess_plural(kind: str) -> str:
    """Kubernetes' UnsafeGuessKindToResource, which Knative's self links use."""
    singular = kind.lower()
    if not singular:
        return singular
    if singular.endswith("s"):
        return singular + "es"
    if singular.endswith("y"):
        return singular[:-1] + "ies"
    return singular + "s"


def self_link(api_version: str, kind: str, namespace: str, name: str) -> str:
    """The event's subject, as Knative builds it: ``/apis/v1/namespaces/default/configmaps/name``."""
    version = api_version
    if "." in version and "/" not in version:
        version += "/versionUnknown"
    return f"/apis/{version}/namespaces/{namespace}/{guess_plural(kind)}/{name}"


def object_reference(obj: dict[str, Any]) -> dict[str, str]:
    """A Reference-mode event's data: Kubernetes' ObjectReference of the object (empty fields left out)."""
    meta = obj.get("metadata") or {}
    reference = {
        "kind": obj.get("kind", ""),
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "apiVersion": obj.get("apiVersion", ""),
    }
    return {k: v for k, v in reference.items() if v}


def apiserver_event(
    watch: ApiServerWatch,
    overrides: dict[str, str],
    event_source: str,
    verb: Verb,
    obj: dict[str, Any],
    event_id: str | None = None,
) -> events.Event:
    """The event a change of ``obj`` sends (Knative's type, source, subject and extensions, then overrides)."""
    meta = obj.get("metadata") or {}
    kind = str(obj.get("kind", ""))
    name = str(meta.get("name", ""))
    namespace = str(meta.get("namespace", ""))
    reference = watch.mode == "Reference"
    attributes = {
        "specversion": events.SPECVERSION,
        "id": event_id or str(uuid.uuid4()),
        "source": event_source,
        "type": f"dev.knative.apiserver.{'ref' if reference else 'resource'}.{verb}",
        "subject": self_link(str(obj.get("apiVersion", "")), kind, namespace, name),
        "datacontenttype": "application/json",
        # Knative copies these so that Triggers can filter on them.
        "kind": kind,
        "name": name,
        "namespace": namespace,
    }
    for key, value in overrides.items():
        if key not in _RESERVED:
            attributes[key] = value
    data = object_reference(obj) if reference else obj
    return events.Event(attributes, orjson.dumps(data))


Listed = dict[str, tuple[str, dict[str, Any]]]  # uid → (resourceVersion, object)


def changes_between(before: Listed, now: Listed) -> list[tuple[Verb, dict[str, Any]]]:
    """What a relist after an expired watch must send: objects added, changed and gone since ``before``."""
    changes: list[tuple[Verb, dict[str, Any]]] = []
    for uid, (version, obj) in now.items():
        if uid not in before:
            changes.append(("add", obj))
        elif before[uid][0] != version:
            changes.append(("update", obj))
    changes.extend(("delete", obj) for uid, (_, obj) in before.items() if uid not in now)
    return changes


def owned_as_wanted(watch: ApiServerWatch, obj: dict[str, Any]) -> bool:
    """Knative's ``owner`` filter: only objects whose controller is of that kind (and apiVersion, if set)."""
    if not watch.owner_kind:
        return True
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if not ref.get("controller"):
            continue
        if ref.get("kind") == watch.owner_kind and (
            not watch.owner_api_version or ref.get("apiVersion") == watch.owner_api_version
        ):
            return True
    return False


# ---------------------------------------------------------------------------------- the API server


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ApiServerAccess:
    """The sources runner's connection to the API server; ``as_user`` makes a request as that user."""

    def __init__(self, configuration: k8s.Configuration) -> None:
        self.configuration = configuration
        self.api = k8s.ApiClient(configuration)

    @classmethod
    async def load(cls, kubeconfig: str | None, context: str | None) -> ApiServerAccess | None:
        """A kubeconfig (a context in it) when named, else the pod's service account; None without either
        (local mode without a cluster: ApiServerSources then say so)."""
        configuration = k8s.Configuration()
        if kubeconfig:
            await k8s_config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)
            except k8s_config.ConfigException:  # a pod without its token mounted
                return None
        else:
            return None
        return cls(configuration)

    @property
    def host(self) -> str:
        return str(self.configuration.host)

    async def close(self) -> None:
        await self.api.close()

    async def _call(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        body: Any,
        as_user: str | None,
        timeout: Any = 30,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if as_user:
            headers["Impersonate-User"] = as_user
        return await self.api.call_api(
            path,
            method,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )

    async def request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: Any = None,
        as_user: str | None = None,
    ) -> Any:
        response = await self._call(method, path, query, body, as_user)
        async with response:
            data = await response.read()
            if not 200 <= response.status < 300:
                raise ApiError(response.status, _message(data))
            return orjson.loads(data)

    async def stream(self, path: str, query: dict[str, str], as_user: str | None) -> AsyncIterator[Any]:
        """The lines of a watch, decoded."""
        import aiohttp

        response = await self._call(
            "GET", path, query, None, as_user, aiohttp.ClientTimeout(total=None, sock_read=None)
        )
        async with response:
            if not 200 <= response.status < 300:
                raise ApiError(response.status, _message(await response.read()))
            # Chunks, not readline: one watch event (a large object) may exceed aiohttp's line limit.
            pending = b""
            async for chunk in response.content.iter_any():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield orjson.loads(line)


def _message(data: bytes) -> str:
    try:
        return str(orjson.loads(data).get("message") or data.decode(errors="replace"))
    except (orjson.JSONDecodeError, AttributeError):
        return data.decode(errors="replace")


# --------------------------------------------------------------------------------------- the plan


class NotWatching(Exception):
    """Why a source cannot watch now: the condition it sets (``type``, ``reason``) and a message."""

    def __init__(self, type_: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.type = type_
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Target:
    """One list-and-watch: a resource in a namespace (None: every namespace, or a cluster-scoped kind)."""

    resource: WatchedResource
    group: str
    plural: str
    namespace: str | None

    @property
    def path(self) -> str:
        version = self.resource.api_version
        base = f"/api/{version}" if "/" not in version else f"/apis/{version}"
        if self.namespace:
            return f"{base}/namespaces/{self.namespace}/{self.plural}"
        return f"{base}/{self.plural}"


@dataclass(frozen=True)
class Plan:
    targets: tuple[Target, ...]
    namespaces: tuple[str, ...]


def service_account_user(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


async def make_plan(access: ApiServerAccess, source: Source) -> Plan:
    """Discover the resources, resolve the namespaces and check the account's permissions for each."""
    watch = source.apiserver
    assert watch is not None
    user = service_account_user(source.namespace, watch.service_account)
    if watch.namespace_selector is None:
        namespaces: tuple[str | None, ...] = (source.namespace,)
    elif watch.namespace_selector == "":
        namespaces = (None,)  # Knative's `namespaceSelector: {}`: every namespace
    else:
        # As Knative's controller does, the namespaces are resolved with the runner's own account.
        listed = await access.request(
            "GET", "/api/v1/namespaces", {"labelSelector": watch.namespace_selector}
        )
        namespaces = tuple(sorted(n["metadata"]["name"] for n in listed.get("items", [])))
    targets: list[Target] = []
    missing: list[str] = []
    for resource in watch.resources:
        plural, namespaced = await _discover(access, resource)
        group = resource.api_version.rpartition("/")[0]
        for namespace in namespaces if namespaced else (None,):
            target = Target(resource, group, plural, namespace)
            denied = [v for v in CHECKED_VERBS if not await _allowed(access, user, target, v)]
            if denied:
                where = f' in Namespace "{namespace}"' if namespace else ""
                missing.append(f'{", ".join(denied)} resource "{plural}" in API group "{group}"{where}')
            targets.append(target)
    if missing:
        raise NotWatching(
            "SufficientPermissions", "InsufficientPermissions", f"User {user} cannot {', '.join(missing)}"
        )
    return Plan(tuple(targets), tuple(n for n in namespaces if n))


async def _discover(access: ApiServerAccess, resource: WatchedResource) -> tuple[str, bool]:
    version = resource.api_version
    path = f"/api/{version}" if "/" not in version else f"/apis/{version}"
    try:
        listing = await access.request("GET", path)
    except ApiError as err:
        if err.status == 404:
            raise NotWatching(
                "Deployed", "ResourceNotFound", f"the API server does not serve {version}"
            ) from None
        raise
    for entry in listing.get("resources", []):
        if entry.get("kind") == resource.kind and "/" not in entry.get("name", ""):
            return str(entry["name"]), bool(entry.get("namespaced"))
    raise NotWatching(
        "Deployed", "ResourceNotFound", f"the API server serves no kind {resource.kind} in {version}"
    )


async def _allowed(access: ApiServerAccess, user: str, target: Target, verb: str) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "namespace": target.namespace or "",
                "verb": verb,
                "group": target.group,
                "resource": target.plural,
            }
        },
    }
    try:
        answer = await access.request(
            "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review, as_user=user
        )
    except ApiError as err:
        if err.status == 403:
            raise NotWatching(
                "SufficientPermissions",
                "ImpersonationForbidden",
                f"the sources runner may not act as {user} (it needs impersonate on serviceaccounts): "
                f"{err.message}",
            ) from None
        raise
    return bool((answer.get("status") or {}).get("allowed"))


# ------------------------------------------------------------------------------------- the watcher

Send = Callable[[Source, events.Event], Awaitable[object]]
Report = Callable[[SourceReport], Awaitable[None]]


class ApiServerWatcher:
    """One ApiServerSource: plans, reports, watches every target, and rechecks the plan periodically."""

    def __init__(
        self,
        source: Source,
        access: ApiServerAccess,
        send: Send,
        report: Report,
        recheck_seconds: float = 10.0,
    ) -> None:
        assert source.apiserver is not None
        self.source = source
        self.watch = source.apiserver
        self.access = access
        self.send = send
        self.report = report
        self.recheck_seconds = recheck_seconds
        self.user = service_account_user(source.namespace, self.watch.service_account)
        self.filter: Filter = compile_trigger_filter(None, self.watch.filters)
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def _status(
        self, permissions: ReportedCondition, deployed: ReportedCondition, plan: Plan | None
    ) -> None:
        await self.report(
            SourceReport(
                id=self.source.id,
                generation=self.watch.generation,
                conditions=(permissions, deployed),
                namespaces=plan.namespaces if plan else (),
                event_source=self.access.host,
            )
        )

    async def _run(self) -> None:
        while True:
            try:
                plan = await make_plan(self.access, self.source)
            except NotWatching as why:
                await self._not_watching(why)
                await asyncio.sleep(self.recheck_seconds)
                continue
            except Exception as err:
                log.warning(
                    "checking an ApiServerSource failed", extra={"source": self.source.id, "error": repr(err)}
                )
                await self._not_watching(NotWatching("Deployed", "ApiServerUnreachable", str(err)))
                await asyncio.sleep(self.recheck_seconds)
                continue
            await self._watch(plan)

    async def _not_watching(self, why: NotWatching) -> None:
        failed = ReportedCondition(type=why.type, status="False", reason=why.reason, message=why.message)
        if why.type == "SufficientPermissions":
            other = ReportedCondition(
                type="Deployed", status="Unknown", reason="NotWatching", message=why.message
            )
            await self._status(failed, other, None)
        else:
            await self._status(ReportedCondition(type="SufficientPermissions", status="True"), failed, None)

    async def _watch(self, plan: Plan) -> None:
        """Watch every target until the plan changes or a watch fails; then return to plan again."""
        permitted = ReportedCondition(type="SufficientPermissions", status="True")
        established = [asyncio.Event() for _ in plan.targets]
        streams = [
            asyncio.create_task(self._follow(target, ready))
            for target, ready in zip(plan.targets, established, strict=True)
        ]
        try:
            await self._status(
                permitted,
                ReportedCondition(
                    type="Deployed", status="Unknown", reason="Watching", message="starting watches"
                ),
                plan,
            )
            all_established = asyncio.create_task(_all_set(established))
            await asyncio.wait([*streams, all_established], return_when=asyncio.FIRST_COMPLETED)
            all_established.cancel()
            if all(e.is_set() for e in established):
                message = f"watching {', '.join(sorted({t.plural for t in plan.targets}))} as {self.user}"
                await self._status(
                    permitted, ReportedCondition(type="Deployed", status="True", message=message), plan
                )
            while True:
                finished = [s for s in streams if s.done()]
                if finished:
                    error = finished[0].exception()
                    raise error or RuntimeError("a watch ended")
                await asyncio.wait(streams, timeout=self.recheck_seconds)
                if any(s.done() for s in streams):
                    continue
                if await make_plan(self.access, self.source) != plan:
                    return
        except NotWatching as why:
            await self._not_watching(why)
            await asyncio.sleep(self.recheck_seconds)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning(
                "an ApiServerSource watch failed", extra={"source": self.source.id, "error": repr(err)}
            )
            await self._status(
                permitted,
                ReportedCondition(type="Deployed", status="False", reason="WatchFailed", message=str(err)),
                plan,
            )
            await asyncio.sleep(1.0)
        finally:
            for s in streams:
                s.cancel()
            await asyncio.gather(*streams, return_exceptions=True)

    async def _follow(self, target: Target, established: asyncio.Event) -> None:
        """List, then watch from the list's version; relist (sending what changed) when the watch expired."""
        selector = {"labelSelector": target.resource.label_selector} if target.resource.label_selector else {}
        known: Listed | None = None
        while True:
            try:
                listed = await self.access.request("GET", target.path, selector, as_user=self.user)
            except ApiError as err:
                raise _as_not_watching(err, target, self.user) from None
            version = str(listed["metadata"]["resourceVersion"])
            current = {_uid(o): (_version(o), _typed(o, target)) for o in listed.get("items", [])}
            if known is not None:
                for verb, obj in changes_between(known, current):
                    await self._emit(verb, obj)
            known = current
            established.set()
            while True:
                query = {
                    **selector,
                    "watch": "true",
                    "resourceVersion": version,
                    "allowWatchBookmarks": "true",
                }
                query["timeoutSeconds"] = str(WATCH_TIMEOUT_SECONDS)
                expired = False
                try:
                    async for change in self.access.stream(target.path, query, self.user):
                        kind = change.get("type")
                        obj = change.get("object") or {}
                        if kind == "ERROR":
                            expired = obj.get("code") == 410
                            if not expired:
                                raise ApiError(int(obj.get("code") or 500), str(obj.get("message")))
                            break
                        version = _version(obj) or version
                        change_verb = _WATCH_VERBS.get(str(kind))
                        if change_verb is None:
                            continue  # BOOKMARK
                        if change_verb == "delete":
                            known.pop(_uid(obj), None)
                        else:
                            known[_uid(obj)] = (_version(obj), obj)
                        await self._emit(change_verb, obj)
                except ApiError as err:
                    if err.status == 410:
                        expired = True
                    else:
                        raise _as_not_watching(err, target, self.user) from None
                if expired:
                    break

    async def _emit(self, verb: Verb, obj: dict[str, Any]) -> None:
        if not owned_as_wanted(self.watch, obj):
            return
        event = apiserver_event(self.watch, self.source.ce_overrides, self.access.host, verb, obj)
        if not self.filter(event.attributes):
            return
        await self.send(self.source, event)


async def _all_set(flags: list[asyncio.Event]) -> None:
    for flag in flags:
        await flag.wait()


def _as_not_watching(err: ApiError, target: Target, user: str) -> Exception:
    if err.status == 403:
        return NotWatching("SufficientPermissions", "InsufficientPermissions", f"{user}: {err.message}")
    return err


def _uid(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


def _version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _typed(obj: dict[str, Any], target: Target) -> dict[str, Any]:
    # List items carry no apiVersion and kind; the event's subject and data need them.
    return {"apiVersion": target.resource.api_version, "kind": target.resource.kind, **obj}


class ApiServerSources:
    """Every ApiServerSource this runner owns; without a configured cluster, each says so in its report."""

    def __init__(
        self, access: ApiServerAccess | None, send: Send, report: Report, recheck_seconds: float
    ) -> None:
        self.access = access
        self.send = send
        self.report = report
        self.recheck_seconds = recheck_seconds
        self.running: dict[str, ApiServerWatcher] = {}
        self.unconfigured: dict[str, Source] = {}

    async def ensure(self, source: Source) -> None:
        if self.access is None:
            if self.unconfigured.get(source.id) != source:
                self.unconfigured[source.id] = source
                await self.report(no_cluster_report(source))
            return
        current = self.running.get(source.id)
        if current is not None and current.source == source:
            return
        await self.stop(source.id)
        self.running[source.id] = ApiServerWatcher(
            source, self.access, self.send, self.report, self.recheck_seconds
        )

    async def stop(self, source_id: str) -> None:
        self.unconfigured.pop(source_id, None)
        watcher = self.running.pop(source_id, None)
        if watcher is not None:
            await watcher.stop()

    async def stop_all(self) -> None:
        await asyncio.gather(
            *(self.stop(source_id) for source_id in list({*self.running, *self.unconfigured}))
        )


def no_cluster_report(source: Source) -> SourceReport:
    assert source.apiserver is not None
    message = (
        "the sources runner has no Kubernetes API server to watch: set KUBECONFIG (or run it in a cluster)"
    )
    return SourceReport(
        id=source.id,
        generation=source.apiserver.generation,
        conditions=(
            ReportedCondition(
                type="SufficientPermissions", status="False", reason="NoCluster", message=message
            ),
            ReportedCondition(type="Deployed", status="False", reason="NoCluster", message=message),
        ),
    )
