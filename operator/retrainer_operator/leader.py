"""Leader election on a coordination.k8s.io/v1 Lease: two replicas, one active.

Kopf's peering cannot give this: the replicas of one Deployment share a priority, and Kopf
pauses every same-priority peer; and a pause stops only Kopf's handlers and timers, never our
Ticker thread. So the operator does what client-go's leaderelection does: it holds a Lease
before it starts anything that reconciles (Kopf, its timers, the ticker), renews it while it
runs, exits when it could not renew for the renew deadline (the Deployment restarts it as a
standby), and clears the holder when it stops, so that a rolling upgrade's new pod takes over
at its next retry instead of a lease duration later.

Expiry is judged on this process's own monotonic clock, from the moment it first saw the
current record (client-go's observedTime), never from the holder's renewTime: two nodes'
clocks need not agree. Every write is a compare-and-set on the Lease's resourceVersion.

The decisions are pure functions of the record and the clocks; `Elector` is the small loop
that applies them through a `LeaseStore`, and `KubeLeaseStore` is that store on the apiserver.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import http.server
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import kubernetes
import prometheus_client
from kubernetes.client.exceptions import ApiException

__all__ = [
    "LEADER",
    "Elector",
    "KubeLeaseStore",
    "LeaseStore",
    "Observation",
    "Record",
    "claimed",
    "held_by_other",
    "lease_spec",
    "micro_time",
    "observe",
    "record_of",
    "released",
    "renewal_lost",
    "standby_health",
]

logger = logging.getLogger("retrainer.leader")

LEADER = prometheus_client.Gauge(
    "retrainer_leader", "1 while this operator process holds the leader Lease and reconciles."
)


# ---- the record and the decisions (pure) ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Record:
    """A Lease's spec, as client-go's LeaderElectionRecord. An empty holder: free to take."""

    holder: str = ""
    duration: int = 0
    acquired: str = ""
    renewed: str = ""
    transitions: int = 0


@dataclasses.dataclass(frozen=True)
class Observation:
    """A record and the monotonic time at which this process first saw it unchanged."""

    record: Record
    at: float


def micro_time(moment: datetime.datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC), as a Lease's times are."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_of(lease: Mapping[str, Any]) -> Record:
    spec = lease.get("spec") or {}
    return Record(
        holder=str(spec.get("holderIdentity") or ""),
        duration=int(spec.get("leaseDurationSeconds") or 0),
        acquired=str(spec.get("acquireTime") or ""),
        renewed=str(spec.get("renewTime") or ""),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


def lease_spec(record: Record) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.duration,
        "leaseTransitions": record.transitions,
    }
    if record.acquired:
        spec["acquireTime"] = record.acquired
    if record.renewed:
        spec["renewTime"] = record.renewed
    return spec


def observe(previous: Observation | None, record: Record, now: float) -> Observation:
    """The clock restarts only when the record changed: a holder that stops renewing leaves
    the same record, and the lease expires its duration after this process first saw it."""
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


def held_by_other(observation: Observation, identity: str, now: float) -> bool:
    """True while another holder's lease has not expired by this process's clock."""
    record = observation.record
    return (
        bool(record.holder) and record.holder != identity and now < observation.at + record.duration
    )


def claimed(record: Record | None, identity: str, duration: int, stamp: str) -> Record:
    """The record that acquires the lease for `identity`, or renews it when already held:
    a renewal keeps the acquire time and the transition count, a takeover counts one more."""
    if record is not None and record.holder == identity:
        return dataclasses.replace(
            record, duration=duration, renewed=stamp, acquired=record.acquired or stamp
        )
    transitions = record.transitions + 1 if record is not None else 0
    return Record(identity, duration, stamp, stamp, transitions)


def released(record: Record, identity: str, stamp: str) -> Record | None:
    """The record that gives the lease up (holder cleared, one-second duration, as client-go
    releases), or None when `identity` does not hold it: never clear another's lease."""
    if record.holder != identity:
        return None
    return dataclasses.replace(record, holder="", duration=1, renewed=stamp)


def renewal_lost(last_renewed: float, now: float, renew_deadline: float) -> bool:
    """True once no renewal succeeded for the renew deadline. The deadline is shorter than the
    lease duration, so this process stops before any standby may take the lease."""
    return now - last_renewed >= renew_deadline


# ---- the store ----------------------------------------------------------------------------


class LeaseStore(Protocol):
    """One Lease; every call fails within `timeout` seconds."""

    def get(self, timeout: float) -> tuple[Record, str] | None:
        """The record and its resourceVersion; None when the Lease does not exist."""

    def create(self, record: Record, timeout: float) -> bool:
        """False when another process created it first."""

    def replace(self, record: Record, version: str, timeout: float) -> bool:
        """False when the Lease changed since `version` was read (a lost compare-and-set)."""


class KubeLeaseStore:
    """The Lease `namespace/name` on the apiserver, read and written as raw JSON."""

    def __init__(self, api_client: kubernetes.client.ApiClient, namespace: str, name: str) -> None:
        self.api = kubernetes.client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name

    def _body(self, record: Record, version: str | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if version is not None:
            metadata["resourceVersion"] = version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": lease_spec(record),
        }

    def get(self, timeout: float) -> tuple[Record, str] | None:
        try:
            response: Any = self.api.read_namespaced_lease(
                self.name, self.namespace, _preload_content=False, _request_timeout=timeout
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        lease = json.loads(response.data)
        return record_of(lease), str(lease["metadata"]["resourceVersion"])

    def create(self, record: Record, timeout: float) -> bool:
        try:
            self.api.create_namespaced_lease(
                self.namespace,
                self._body(record),  # type: ignore[arg-type]  # a dict body is accepted
                _preload_content=False,
                _request_timeout=timeout,
            )
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    def replace(self, record: Record, version: str, timeout: float) -> bool:
        try:
            self.api.replace_namespaced_lease(
                self.name,
                self.namespace,
                self._body(record, version),  # type: ignore[arg-type]  # a dict body is accepted
                _preload_content=False,
                _request_timeout=timeout,
            )
        except ApiException as error:
            if error.status in (404, 409):
                return False
            raise
        return True


# ---- the loop -----------------------------------------------------------------------------


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Elector:
    """Acquires, renews and releases one Lease for `identity`.

    `acquire` blocks until this process leads (or `stop` is set); `keep` renews in a thread
    and calls `on_lost` once renewals fail for `renew_deadline` seconds or another process
    holds the lease; `release` stops renewing and clears the holder.
    """

    def __init__(
        self,
        store: LeaseStore,
        identity: str,
        duration: int = 15,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        if not 0 < retry_period < renew_deadline < duration:
            raise ValueError(
                f"need 0 < retry period ({retry_period}) < renew deadline ({renew_deadline}) "
                f"< lease duration ({duration})"
            )
        self.store = store
        self.identity = identity
        self.duration = duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock
        self._wall = wall
        self._observed: Observation | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def holder(self) -> str:
        """The holder this process last saw ('' when free or never read)."""
        return self._observed.record.holder if self._observed else ""

    def try_acquire_or_renew(self, timeout: float | None = None) -> bool:
        """One attempt: take a free or expired lease, or renew our own. False: held by
        another, or lost a race for it. Raises on apiserver errors."""
        timeout = self.retry_period if timeout is None else timeout
        stamp = micro_time(self._wall())
        found = self.store.get(timeout)
        if found is None:
            record = claimed(None, self.identity, self.duration, stamp)
            if not self.store.create(record, timeout):
                return False
            self._observed = Observation(record, self._clock())
            return True
        current, version = found
        self._observed = observe(self._observed, current, self._clock())
        if held_by_other(self._observed, self.identity, self._clock()):
            return False
        record = claimed(current, self.identity, self.duration, stamp)
        if not self.store.replace(record, version, timeout):
            return False
        self._observed = Observation(record, self._clock())
        return True

    def _attempt(self, timeout: float | None = None) -> bool:
        try:
            return self.try_acquire_or_renew(timeout)
        except Exception as error:  # the apiserver is away: the next attempt retries
            logger.warning("event=leader_attempt_failed identity=%s error=%r", self.identity, error)
            return False

    def acquire(self, stop: threading.Event | None = None) -> float | None:
        """Block until this process holds the lease; returns the seconds waited, or None when
        `stop` was set first."""
        stop = stop or threading.Event()
        started = self._clock()
        seen = None
        while not stop.is_set():
            if self._attempt():
                waited = self._clock() - started
                LEADER.set(1)
                logger.info(
                    "event=leader_acquired identity=%s waited_s=%.3f transitions=%d",
                    self.identity,
                    waited,
                    self._observed.record.transitions if self._observed else 0,
                    extra={
                        "event": "leader_acquired",
                        "identity": self.identity,
                        "waited_s": waited,
                    },
                )
                return waited
            if self.holder != seen:
                seen = self.holder
                logger.info(
                    "event=leader_waiting identity=%s holder=%s", self.identity, seen or "-"
                )
            stop.wait(self.retry_period)
        return None

    def renew_until_lost(self, on_lost: Callable[[], None]) -> None:
        """Renew every retry period until `release`; call `on_lost` and return when no renewal
        succeeded for the renew deadline, or another process holds the lease."""
        last_renewed = self._clock()
        while True:
            remaining = last_renewed + self.renew_deadline - self._clock()
            if self._stop.wait(max(0.0, min(self.retry_period, remaining))):
                return
            remaining = last_renewed + self.renew_deadline - self._clock()
            if remaining > 0 and self._attempt(timeout=min(self.retry_period, remaining)):
                last_renewed = self._clock()
                continue
            taken = self.holder not in ("", self.identity)
            if self._stop.is_set():
                return
            if taken or renewal_lost(last_renewed, self._clock(), self.renew_deadline):
                LEADER.set(0)
                logger.error(
                    "event=leader_lost identity=%s holder=%s since_renewal_s=%.3f",
                    self.identity,
                    self.holder or "-",
                    self._clock() - last_renewed,
                )
                on_lost()
                return

    def keep(self, on_lost: Callable[[], None]) -> None:
        """Renew in a background thread (see `renew_until_lost`). A renewer that dies of a bug
        counts as lost too: a leader that no longer renews must not keep reconciling."""

        def renew() -> None:
            try:
                self.renew_until_lost(on_lost)
            except BaseException:
                logger.exception("event=leader_lost identity=%s renewer failed", self.identity)
                on_lost()

        self._renewer = threading.Thread(target=renew, name="retrainer-leader", daemon=True)
        self._renewer.start()

    def release(self) -> bool:
        """Stop renewing and clear the holder if it is still us; True when released."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=self.renew_deadline)
            self._renewer = None
        LEADER.set(0)
        try:
            found = self.store.get(self.retry_period)
            if found is None:
                return False
            current, version = found
            record = released(current, self.identity, micro_time(self._wall()))
            if record is None or not self.store.replace(record, version, self.retry_period):
                return False
        except Exception as error:  # the lease then expires after its duration
            logger.warning("event=leader_release_failed identity=%s error=%r", self.identity, error)
            return False
        logger.info("event=leader_released identity=%s", self.identity)
        return True


# ---- liveness while standing by -----------------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/healthz":
            self.send_error(404)
            return
        body = json.dumps({"leader": False, "standby": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def standby_health(port: int) -> Iterator[None]:
    """Answer `/healthz` on `port` while waiting for the lease: a standby is alive, only not
    leading. Kopf's own liveness endpoint takes the port over once this process leads."""
    if not port:
        yield
        return
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), _Health)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="retrainer-standby", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
