"""Leader election on a Lease: an expired or free lease is taken, a held one waited for, the
leader renews or gives up before a standby may take over, and a release clears only our own
holder. Decisions are checked as plain functions, the loop against an in-memory Lease."""

from __future__ import annotations

import datetime
import json
import socket
import threading
import types
import urllib.request
from collections.abc import Iterator

import pytest
from retrainer_operator import leader
from retrainer_operator.config import ConfigError, OperatorConfig
from retrainer_operator.leader import Elector, Observation, Record

STAMP = "2025-01-01T00:00:00.000000Z"
LATER = "2025-01-01T00:00:05.000000Z"


# ---- decisions ------------------------------------------------------------------------------


def test_a_lease_held_by_another_is_waited_for_until_its_duration_passes_unrenewed() -> None:
    held = Record("a", 15, STAMP, STAMP, 0)
    seen = leader.observe(None, held, now=100.0)
    assert leader.held_by_other(seen, "b", now=114.9)
    # The same record seen again does not restart the clock; it expires 15 s after first seen.
    again = leader.observe(seen, held, now=110.0)
    assert again.at == 100.0
    assert not leader.held_by_other(again, "b", now=115.0)


def test_a_renewal_restarts_the_standbys_clock() -> None:
    seen = leader.observe(None, Record("a", 15, STAMP, STAMP, 0), now=100.0)
    renewed = leader.observe(seen, Record("a", 15, STAMP, LATER, 0), now=112.0)
    assert renewed.at == 112.0
    assert leader.held_by_other(renewed, "b", now=120.0)


def test_a_free_or_own_lease_is_never_held_by_another() -> None:
    assert not leader.held_by_other(Observation(Record("", 1), 100.0), "b", now=100.0)
    assert not leader.held_by_other(Observation(Record("b", 15), 100.0), "b", now=100.0)


def test_a_takeover_counts_a_transition_and_a_renewal_keeps_the_acquire_time() -> None:
    assert leader.claimed(None, "a", 15, STAMP) == Record("a", 15, STAMP, STAMP, 0)
    taken = leader.claimed(Record("a", 15, STAMP, STAMP, 0), "b", 15, LATER)
    assert taken == Record("b", 15, LATER, LATER, 1)
    renewed = leader.claimed(taken, "b", 15, "2025-01-01T00:00:09.000000Z")
    assert renewed.acquired == LATER and renewed.transitions == 1
    assert renewed.renewed == "2025-01-01T00:00:09.000000Z"


def test_a_release_clears_only_our_own_holder() -> None:
    ours = Record("a", 15, STAMP, STAMP, 2)
    assert leader.released(ours, "a", LATER) == Record("", 1, STAMP, LATER, 2)
    assert leader.released(ours, "b", LATER) is None


def test_the_leader_gives_up_at_the_renew_deadline() -> None:
    assert not leader.renewal_lost(last_renewed=100.0, now=109.9, renew_deadline=10.0)
    assert leader.renewal_lost(last_renewed=100.0, now=110.0, renew_deadline=10.0)


def test_a_record_survives_the_lease_spec_round_trip() -> None:
    record = Record("a", 15, STAMP, LATER, 3)
    assert leader.record_of({"spec": leader.lease_spec(record)}) == record
    assert leader.record_of({"spec": {}}) == Record()
    moment = datetime.datetime(2025, 1, 1, 1, 2, 3, 4, tzinfo=datetime.UTC)
    assert leader.micro_time(moment) == "2025-01-01T01:02:03.000004Z"


# ---- the loop, against an in-memory Lease ------------------------------------------------


class MemoryLease:
    """A LeaseStore with compare-and-set on a version counter; `down` fails every call."""

    def __init__(self) -> None:
        self.record: Record | None = None
        self.version = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("apiserver away")

    def get(self, timeout: float) -> tuple[Record, str] | None:
        self._check()
        return None if self.record is None else (self.record, str(self.version))

    def create(self, record: Record, timeout: float) -> bool:
        self._check()
        if self.record is not None:
            return False
        self.record, self.version = record, self.version + 1
        return True

    def replace(self, record: Record, version: str, timeout: float) -> bool:
        self._check()
        if self.record is None or str(self.version) != version:
            return False
        self.record, self.version = record, self.version + 1
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(store: MemoryLease, identity: str, clock: Clock) -> Elector:
    return Elector(store, identity, duration=15, renew_deadline=10, retry_period=2, clock=clock)


def test_the_first_elector_creates_the_lease_and_a_second_one_waits() -> None:
    store, clock = MemoryLease(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.try_acquire_or_renew()
    assert store.record is not None and store.record.holder == "a"
    assert not b.try_acquire_or_renew()
    assert b.holder == "a"


def test_an_expired_lease_is_taken_over_and_its_old_holder_then_finds_it_taken() -> None:
    store, clock = MemoryLease(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b's clock starts now
    clock.now += 14.9
    assert not b.try_acquire_or_renew()
    clock.now += 0.1
    assert b.try_acquire_or_renew()
    assert store.record == Record("b", 15, store.record.acquired, store.record.renewed, 1)
    assert not a.try_acquire_or_renew()
    assert a.holder == "b"


def test_renewals_keep_a_standby_waiting() -> None:
    store, clock = MemoryLease(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.try_acquire_or_renew()
    for _ in range(20):
        assert not b.try_acquire_or_renew()
        clock.now += 2
        assert a.try_acquire_or_renew()  # renews: a new renewTime is a changed record
    assert store.record is not None and store.record.holder == "a"


def test_a_released_lease_is_taken_at_once() -> None:
    store, clock = MemoryLease(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert a.release()
    assert store.record is not None and store.record.holder == ""
    assert b.try_acquire_or_renew()
    assert not a.release(), "a released a lease it no longer holds"
    assert store.record.holder == "b"


def test_a_lost_compare_and_set_is_not_leadership() -> None:
    store, clock = MemoryLease(), Clock()
    a = elector(store, "a", clock)
    store.record, store.version = Record("", 1, STAMP, STAMP, 0), 7

    def racing_replace(record: Record, version: str, timeout: float) -> bool:
        store.version += 1  # someone wrote between our read and our write
        return MemoryLease.replace(store, record, version, timeout)

    store.replace = racing_replace  # type: ignore[method-assign]
    assert not a.try_acquire_or_renew()


def test_acquire_returns_none_when_stopped_while_standing_by() -> None:
    store, clock = MemoryLease(), Clock()
    assert elector(store, "a", clock).try_acquire_or_renew()
    stop = threading.Event()
    stop.set()
    assert elector(store, "b", clock).acquire(stop) is None


def test_acquire_reports_leadership_on_the_gauge() -> None:
    store, clock = MemoryLease(), Clock()
    assert elector(store, "a", clock).acquire() == 0.0
    assert leader.LEADER._value.get() == 1  # type: ignore[attr-defined]
    elector(store, "a", clock).release()
    assert leader.LEADER._value.get() == 0  # type: ignore[attr-defined]


def test_the_leader_calls_on_lost_when_renewals_fail_past_the_deadline() -> None:
    store = MemoryLease()
    fast = Elector(store, "a", duration=3, renew_deadline=0.3, retry_period=0.05)
    assert fast.acquire() is not None
    store.down = True
    lost = threading.Event()
    fast.keep(on_lost=lost.set)
    assert lost.wait(5), "on_lost was never called"
    fast.release()


def test_the_leader_calls_on_lost_at_once_when_another_holds_the_lease() -> None:
    store = MemoryLease()
    fast = Elector(store, "a", duration=3, renew_deadline=2, retry_period=0.05)
    assert fast.acquire() is not None
    store.record = Record("b", 3, STAMP, STAMP, 1)
    store.version += 1
    lost = threading.Event()
    fast.keep(on_lost=lost.set)
    assert lost.wait(1.5), "on_lost waited for the deadline though the lease was taken"
    fast.release()
    assert store.record.holder == "b"


def test_a_renewer_that_fails_of_a_bug_counts_as_lost() -> None:
    store = MemoryLease()
    ticks = iter([0.0, 0.0, 0.0])

    def clock() -> float:
        return next(ticks)  # StopIteration inside the renewer: a bug, not an apiserver error

    broken = Elector(store, "a", duration=3, renew_deadline=2, retry_period=0.05, clock=clock)
    assert broken.try_acquire_or_renew()
    lost = threading.Event()
    broken.keep(on_lost=lost.set)
    assert lost.wait(2), "a dead renewer left the process leading"


def test_a_renewing_leader_is_not_lost_and_release_stops_it() -> None:
    store = MemoryLease()
    fast = Elector(store, "a", duration=3, renew_deadline=0.5, retry_period=0.05)
    assert fast.acquire() is not None
    lost = threading.Event()
    fast.keep(on_lost=lost.set)
    assert not lost.wait(1.0)
    assert store.version > 3, "no renewals happened"
    assert fast.release()
    assert not lost.is_set()


def test_timings_must_let_the_leader_give_up_before_a_standby_takes_over() -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        Elector(MemoryLease(), "a", duration=10, renew_deadline=10, retry_period=2)


# ---- liveness while standing by -----------------------------------------------------------


@pytest.fixture
def port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = int(sock.getsockname()[1])
    yield free


def test_a_standby_answers_its_liveness_probe_and_frees_the_port_when_it_leads(port: int) -> None:
    url = f"http://127.0.0.1:{port}/healthz"
    with leader.standby_health(port), urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {"leader": False, "standby": True}
    with socket.socket() as sock:  # Kopf's liveness endpoint binds it next
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))


# ---- configuration ------------------------------------------------------------------------


def test_leader_election_is_off_by_default_with_client_go_timings() -> None:
    config = OperatorConfig.from_env({})
    assert not config.leader_election
    assert config.lease_name == "retrainer-operator"
    assert (
        config.lease_duration_seconds,
        config.lease_renew_deadline_seconds,
        config.lease_retry_period_seconds,
    ) == (15, 10.0, 2.0)


def test_leader_election_reads_the_pod_name_and_namespace_from_the_downward_api() -> None:
    env = {"RETRAINER_LEADER_ELECTION": "true", "POD_NAME": "op-1", "POD_NAMESPACE": "sys"}
    config = OperatorConfig.from_env(env)
    assert config.leader_election and config.lease_namespace == "sys"
    assert config.leader_identity.startswith("op-1_")
    assert OperatorConfig.from_env(env).leader_identity != config.leader_identity
    explicit = {**env, "RETRAINER_LEASE_NAMESPACE": "elsewhere", "RETRAINER_LEADER_IDENTITY": "x"}
    config = OperatorConfig.from_env(explicit)
    assert (config.lease_namespace, config.leader_identity) == ("elsewhere", "x")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RETRAINER_LEADER_ELECTION": "yes"}, "RETRAINER_LEADER_ELECTION"),
        ({"RETRAINER_LEADER_ELECTION": "on"}, "POD_NAMESPACE"),
        (
            {
                "RETRAINER_LEASE_DURATION_SECONDS": "10",
                "RETRAINER_LEASE_RENEW_DEADLINE_SECONDS": "10",
            },
            "before a standby",
        ),
        ({"RETRAINER_LEASE_RETRY_PERIOD_SECONDS": "0"}, "must be positive"),
    ],
)
def test_bad_leader_election_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        OperatorConfig.from_env(env)


# ---- the wiring: nothing reconciles before the lease is held ------------------------------


class RecordingElector:
    def __init__(self, calls: list[str], leads: bool) -> None:
        self.calls = calls
        self.leads = leads

    def acquire(self, stop: threading.Event | None = None) -> float | None:
        self.calls.append("acquire")
        return 0.0 if self.leads else None

    def keep(self, on_lost: object) -> None:
        self.calls.append("keep")

    def release(self) -> bool:
        self.calls.append("release")
        return True


@pytest.mark.parametrize("leads", [True, False])
def test_kopf_and_the_ticker_start_only_once_the_lease_is_held_and_it_is_released_after(
    monkeypatch: pytest.MonkeyPatch, leads: bool
) -> None:
    from retrainer_operator import __main__ as entry
    from retrainer_operator import handlers

    calls: list[str] = []
    monkeypatch.setattr(entry, "leader_elector", lambda *_: RecordingElector(calls, leads))
    monkeypatch.setattr(handlers, "run", lambda *_: calls.append("kopf"))
    env = {
        "RETRAINER_LEADER_ELECTION": "true",
        "POD_NAMESPACE": "sys",
        "RETRAINER_HEALTH_PORT": "0",
    }
    config = OperatorConfig.from_env(env)
    deps = types.SimpleNamespace(cluster=None)
    assert entry.run(config, deps, None) == 0  # type: ignore[arg-type]
    assert calls == (["acquire", "keep", "kopf", "release"] if leads else ["acquire"])
