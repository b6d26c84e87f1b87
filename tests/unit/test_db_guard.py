"""The database guard: a bulkhead on calls waiting on the database, and a breaker after link failures."""

import threading
import time

import pytest

from hcc_federation.db import DatabaseGuard
from hcc_federation.settings import parse_settings
from tests.helpers import BASE_SETTINGS


class Unavailable(Exception):
    pass


class LinkLost(Exception):
    pass


def _guard(max_concurrent=2, queue_timeout=0.1, cooldown=0.3) -> DatabaseGuard:
    return DatabaseGuard(
        max_concurrent, queue_timeout, cooldown, Unavailable, lambda exc: isinstance(exc, LinkLost)
    )


def test_calls_beyond_the_cap_fail_after_the_queue_timeout():
    guard = _guard(max_concurrent=2, queue_timeout=0.1)
    inside, leave = threading.Barrier(3), threading.Event()

    def hold():
        with guard.call():
            inside.wait()
            leave.wait()

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for t in holders:
        t.start()
    inside.wait()
    started = time.monotonic()
    with pytest.raises(Unavailable, match="2 calls were waiting"), guard.call():
        pass
    assert 0.1 <= time.monotonic() - started < 1
    leave.set()
    for t in holders:
        t.join()
    with guard.call():
        pass
    assert guard.counters["busy"] == 1


def test_a_link_failure_makes_calls_fail_at_once_until_the_cooldown_ends():
    guard = _guard(cooldown=0.3)
    with pytest.raises(LinkLost), guard.call():
        raise LinkLost()
    started = time.monotonic()
    with pytest.raises(Unavailable, match="did not answer lately"), guard.call():
        pass
    assert time.monotonic() - started < 0.05
    time.sleep(0.35)
    with guard.call():
        pass
    assert guard.counters["trips"] == 1


def test_only_failed_connects_and_calls_that_waited_out_a_timeout_trip():
    guard = DatabaseGuard(2, 0.1, 5.0, Unavailable, lambda exc: isinstance(exc, LinkLost), slow_after=0.2)
    # a pooled connection cut by a restart or a load balancer fails at once: no outage
    with pytest.raises(LinkLost), guard.call():
        raise LinkLost()
    assert not guard.is_open()
    with pytest.raises(LinkLost), guard.call():
        time.sleep(0.25)
        raise LinkLost()
    assert guard.is_open()
    guard = DatabaseGuard(2, 0.1, 5.0, Unavailable, lambda exc: isinstance(exc, LinkLost), slow_after=0.2)
    with pytest.raises(LinkLost), guard.call(connect=True):
        raise LinkLost()
    assert guard.is_open()


def test_other_failures_do_not_trip_and_nested_calls_are_one():
    guard = _guard(max_concurrent=1)
    with pytest.raises(ValueError), guard.call():
        raise ValueError("a bad query is not an outage")
    assert not guard.is_open()
    # connecting runs queries of its own inside the admitted call: no deadlock on a cap of 1
    with guard.call(), guard.call():
        pass


def test_database_timeouts_are_parsed_with_their_defaults():
    s = parse_settings(BASE_SETTINGS, environ={}).database
    assert (s.connect_timeout, s.read_timeout, s.write_timeout, s.pool_timeout) == (5, 10, 10, 5.0)
    assert (s.max_concurrent_calls, s.call_queue_timeout, s.failure_cooldown) == (4, 0.5, 5.0)
    raw = {
        **BASE_SETTINGS,
        "hcc.database.read_timeout": "3",
        "hcc.database.max_concurrent_calls": "2",
        "hcc.database.failure_cooldown": "0",
    }
    s = parse_settings(raw, environ={}).database
    assert (s.read_timeout, s.max_concurrent_calls, s.failure_cooldown) == (3, 2, 0.0)
    with pytest.raises(ValueError, match="hcc.database.read_timeout must be at least 1"):
        parse_settings({**BASE_SETTINGS, "hcc.database.read_timeout": "0"}, environ={})


def test_a_mysql_engine_times_out_on_a_silent_server_and_then_fails_fast():
    """A server that accepts and never speaks: connect_timeout (1 s) ends the wait, the guard trips."""
    import socket

    from sqlalchemy.exc import OperationalError

    from hcc_federation.db import make_engine

    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        raw = {
            **BASE_SETTINGS,
            "hcc.database.url": f"mysql+mysqldb://u:p@127.0.0.1:{port}/db",
            "hcc.database.connect_timeout": "1",
        }
        engine = make_engine(parse_settings(raw, environ={}).database)
        try:
            assert engine.pool.timeout() == 5.0
            started = time.monotonic()
            with pytest.raises(OperationalError, match="handshake"):
                engine.connect()
            assert 0.9 < time.monotonic() - started < 3
            started = time.monotonic()
            with pytest.raises(OperationalError, match="did not answer lately"):
                engine.connect()
            assert time.monotonic() - started < 0.1
            assert engine.hcc_guard.counters["trips"] == 1
        finally:
            engine.dispose()


def test_a_call_inside_a_transaction_is_admitted_while_the_queue_is_full():
    # the transaction may hold the row locks that the queued calls wait for: queueing it behind them
    # would stall everyone until the queue timeout
    guard = _guard(max_concurrent=1, queue_timeout=0.1)
    inside, leave = threading.Barrier(2), threading.Event()

    def hold():
        with guard.call():
            inside.wait()
            leave.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait()
    started = time.monotonic()
    with guard.call(queue=False):
        pass
    assert time.monotonic() - started < 0.05
    leave.set()
    holder.join()
    assert guard.counters["busy"] == 0
