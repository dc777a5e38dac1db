"""Leader election on a ``coordination.k8s.io/v1`` Lease: of several operator replicas, one reconciles.

The holder renews the Lease every ``renew_seconds``; a standby takes it once it has seen the same record,
unrenewed, for ``lease_seconds`` (measured on its own clock from when it saw the record change, as
client-go does, so that clocks need not agree). Every write carries the resourceVersion it was read at, so
two candidates cannot both win. A leader that could not renew for ``lease_seconds - renew_seconds`` steps
down before anyone else may take over: :class:`LeadershipLost`, on which the process exits and Kubernetes
restarts it as a standby.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s

from controller.kubernetes.owners import as_models, read_owner_references

log = logging.getLogger("keventing.controller.kubernetes.leader")

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# How often a standby looks at the Lease (client-go's retryPeriod).
RETRY_SECONDS = 2.0


class LeadershipLost(RuntimeError):
    """This replica no longer holds the Lease (taken over, or not renewable in time): it must stop writing."""


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    lease_seconds: float = 15.0
    renew_seconds: float = 5.0
    # The ClusterRole that owns the Lease, so that it goes with the release (controller.kubernetes.owners).
    owner_cluster_role: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.renew_seconds < self.lease_seconds:
            raise ValueError(
                f"the leader election's renew period ({self.renew_seconds:g} s) must be positive and shorter "
                f"than its lease duration ({self.lease_seconds:g} s)"
            )

    @property
    def renew_deadline(self) -> float:
        """How long a leader keeps leading without a successful renewal: a renew period short of the lease."""
        return self.lease_seconds - self.renew_seconds


def default_identity() -> str:
    """The pod's name (a pod's hostname) and the pid: unique among replicas, and readable in the Lease."""
    return f"{socket.gethostname()}_{os.getpid()}"


def default_namespace(service_account_namespace: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The pod's own namespace, from its service account; ``default`` outside a pod."""
    try:
        return service_account_namespace.read_text().strip() or "default"
    except OSError:
        return "default"


def may_take(holder: str | None, identity: str, unchanged_for: float, lease_seconds: float) -> bool:
    """Whether ``identity`` may write the Lease: it holds it, nobody does, or the holder let it expire."""
    return not holder or holder == identity or unchanged_for > lease_seconds


def next_spec(
    current: k8s.V1LeaseSpec | None, identity: str, lease_seconds: float, now: datetime
) -> k8s.V1LeaseSpec:
    """The Lease spec ``identity`` writes to acquire or renew: a new holder counts one more transition."""
    current = current or k8s.V1LeaseSpec()
    renewing = current.holder_identity == identity
    return k8s.V1LeaseSpec(
        holder_identity=identity,
        lease_duration_seconds=max(1, round(lease_seconds)),
        acquire_time=current.acquire_time if renewing and current.acquire_time else now,
        renew_time=now,
        lease_transitions=(current.lease_transitions or 0)
        + (0 if renewing or current.holder_identity is None else 1),
    )


# What a failed request to the API server looks like: an answer other than a conflict, or no answer.
_TRANSIENT = (k8s.ApiException, aiohttp.ClientError, asyncio.TimeoutError, OSError)


class LeaderElector:
    def __init__(
        self, api: k8s.ApiClient, config: LeaseConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.use(api)
        self.clock = clock
        self.leading = False
        self._owned = False  # the Lease has been seen owned by owner_cluster_role
        self._owner_gone_said = False
        self._adopting_tried = False  # an unowned Lease found: owned on this replica's first write (once)
        # The record last seen and when (our clock): a standby's measure of whether the holder renews.
        self._seen: tuple[str | None, object] | None = None
        self._seen_at = 0.0
        self._renewed_at = 0.0

    def use(self, api: k8s.ApiClient) -> None:
        """Make every request with ``api`` (an event loop's own: see :func:`hold_on_own_thread`)."""
        self.api = api
        self.coordination = k8s.CoordinationV1Api(api)

    async def acquire(self) -> None:
        """Wait until this replica holds the Lease."""
        announced = False
        while True:
            started = self.clock()
            try:
                if await self._try_write():
                    self._renewed_at = started
                    break
                if not announced:
                    holder = self._seen[0] if self._seen else None
                    log.info(
                        "standing by: another replica leads", extra={"leader": holder, "lease": self._lease}
                    )
                    announced = True
            except _TRANSIENT as err:
                log.warning("cannot read the leader Lease; retrying", extra={"error": str(err)})
            await asyncio.sleep(RETRY_SECONDS)
        self.leading = True
        log.info("acquired the leader Lease", extra={"lease": self._lease, "identity": self.config.identity})

    async def hold(self) -> None:
        """Renew the Lease while leading; raise :class:`LeadershipLost` when that is no longer certain."""
        while True:
            await asyncio.sleep(self.config.renew_seconds)
            while True:
                started = self.clock()
                left = self._renewed_at + self.config.renew_deadline - started
                if left <= 0:
                    self.leading = False
                    raise LeadershipLost(
                        f"could not renew the Lease {self._lease} for {self.config.renew_deadline:.0f} s"
                    )
                try:
                    renewed = await asyncio.wait_for(self._try_write(), timeout=left)
                except _TRANSIENT as err:
                    log.warning("renewing the leader Lease failed; retrying", extra={"error": str(err)})
                    await asyncio.sleep(min(RETRY_SECONDS, max(left - 0.1, 0.0)))
                    continue
                if not renewed:
                    self.leading = False
                    holder = self._seen[0] if self._seen else None
                    raise LeadershipLost(f"the Lease {self._lease} is held by {holder} now")
                self._renewed_at = started  # when the request left: the API server wrote no earlier than that
                break

    async def release(self, timeout: float = 5.0) -> None:
        """Give the Lease up on a clean shutdown, so that a standby takes over at once (best effort)."""
        if not self.leading:
            return
        self.leading = False
        try:
            await asyncio.wait_for(self._release(), timeout)
        except _TRANSIENT as err:
            log.warning("could not release the leader Lease", extra={"error": str(err) or type(err).__name__})

    async def _release(self) -> None:
        lease = await self.coordination.read_namespaced_lease(self.config.name, self.config.namespace)
        if lease.spec is None or lease.spec.holder_identity != self.config.identity:
            return
        # No holder: a standby takes it on its next look, without waiting for it to expire.
        lease.spec = k8s.V1LeaseSpec(
            lease_duration_seconds=1,
            lease_transitions=lease.spec.lease_transitions,
            renew_time=lease.spec.renew_time,
        )
        await self.coordination.replace_namespaced_lease(self.config.name, self.config.namespace, lease)
        log.info("released the leader Lease", extra={"lease": self._lease})

    @property
    def _lease(self) -> str:
        return f"{self.config.namespace}/{self.config.name}"

    def _observe(self, spec: k8s.V1LeaseSpec | None) -> float:
        """Record the Lease as read; how long (our clock) it has been unchanged."""
        record = (spec.holder_identity, spec.renew_time) if spec else (None, None)
        now = self.clock()
        if record != self._seen:
            self._seen, self._seen_at = record, now
        return now - self._seen_at

    async def _try_write(self) -> bool:
        """One attempt to acquire or renew: True when this replica holds the Lease afterwards."""
        config = self.config
        now = datetime.now(UTC)
        try:
            lease = await self.coordination.read_namespaced_lease(config.name, config.namespace)
        except k8s.ApiException as err:
            if err.status != 404:
                raise
            return await self._create(now)
        self._note_owner(lease)
        unchanged_for = self._observe(lease.spec)
        holder = lease.spec.holder_identity if lease.spec else None
        if not may_take(holder, config.identity, unchanged_for, config.lease_seconds):
            return False
        if holder and holder != config.identity:
            log.info("the leader's Lease expired; taking over", extra={"leader": holder})
        if config.owner_cluster_role and not self._owned and not self._adopting_tried:
            # Made before it was owned (an upgrade from a version that did not own it): owned from now on.
            self._adopting_tried = True
            owners = await self._owners()
            if owners and lease.metadata is not None:
                lease.metadata.owner_references = as_models(owners)
        # metadata.resourceVersion stays as read: the API server refuses the write if anyone wrote meanwhile.
        lease.spec = next_spec(lease.spec, config.identity, config.lease_seconds, now)
        try:
            written = await self.coordination.replace_namespaced_lease(config.name, config.namespace, lease)
        except k8s.ApiException as err:
            if err.status == 409:
                return False
            raise
        self._observe(written.spec)
        return True

    async def _owners(self) -> list[dict[str, Any]] | None:
        """The Lease's owner references, read when it is made. None once an owner this replica has seen own
        the Lease cannot be read any more: the release is being uninstalled (the role is gone, and with it
        the right to read it: 404 or 403), the garbage collector just deleted the Lease, and one made now
        would outlive the release. An owner never seen that cannot be read leaves the Lease unowned."""
        role = self.config.owner_cluster_role
        try:
            owners = await read_owner_references(self.api, role)
        except k8s.ApiException as err:
            fields = {"cluster_role": role, "status": err.status, "reason": err.reason}
            if self._owned:
                if not self._owner_gone_said:
                    self._owner_gone_said = True
                    log.warning(
                        "the ClusterRole that owned the leader Lease cannot be read any more (the release is "
                        "being uninstalled): the Lease is not made again",
                        extra=fields,
                    )
                return None
            log.warning(
                "cannot read the leader Lease's owner: the Lease is made unowned and outlives the release",
                extra=fields,
            )
            return []
        self._owned = self._owned or bool(owners)
        return owners

    def _note_owner(self, lease: k8s.V1Lease) -> None:
        """Whether the Lease as read is owned by the configured role: a replica that did not make it knows
        it from there."""
        role = self.config.owner_cluster_role
        references = (lease.metadata.owner_references if lease.metadata else None) or []
        if role and any(r.kind == "ClusterRole" and r.name == role for r in references):
            self._owned = True

    async def _create(self, now: datetime) -> bool:
        config = self.config
        owners = await self._owners()
        if owners is None:
            return False
        lease = k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(
                name=config.name, namespace=config.namespace, owner_references=as_models(owners) or None
            ),
            spec=next_spec(None, config.identity, config.lease_seconds, now),
        )
        try:
            written = await self.coordination.create_namespaced_lease(config.namespace, lease)
        except k8s.ApiException as err:
            if err.status == 409:  # another replica created it first
                return False
            raise
        self._observe(written.spec)
        return True


async def hold_on_own_thread(elector: LeaderElector, configuration: k8s.Configuration) -> None:
    """:meth:`LeaderElector.hold` on a thread with an event loop and API client of its own.

    The operator's loop can be busy for seconds at a time (thousands of watch events, a reconcile pass over
    10,000 objects); a renewal queued behind that work would miss its deadline and cost the replica its
    leadership although nothing is wrong. Raises what ``hold`` raises (:class:`LeadershipLost`); cancelling
    this stops the thread's renewals before it returns."""
    done: concurrent.futures.Future[None] = concurrent.futures.Future()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def renew() -> None:
        box["loop"], box["task"] = asyncio.get_running_loop(), asyncio.current_task()
        started.set()
        api = k8s.ApiClient(configuration)
        own = elector.api
        elector.use(api)
        try:
            await elector.hold()
        finally:
            elector.use(own)
            await api.close()

    def run() -> None:
        try:
            asyncio.run(renew())
            outcome: BaseException | None = None
        except BaseException as err:  # handed to the caller's loop, whatever it is
            outcome = err
        try:
            if outcome is None:
                done.set_result(None)
            else:
                done.set_exception(outcome)
        except concurrent.futures.InvalidStateError:
            pass  # the caller was cancelled (a stop): its future went with it, nobody waits for this

    thread = threading.Thread(target=run, name="leader-lease", daemon=True)
    thread.start()
    try:
        await asyncio.wrap_future(done)
    except asyncio.CancelledError:
        await asyncio.to_thread(started.wait, 5)
        if "task" in box:
            box["loop"].call_soon_threadsafe(box["task"].cancel)
        await asyncio.to_thread(thread.join, 10)
        raise
