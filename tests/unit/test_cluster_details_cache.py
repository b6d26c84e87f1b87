"""DetailsCache, the per-(cluster, user) snapshots of GET /clusters/{cluster}: window, bounds,
single-flight and failures, on a clock the test moves (tests/functional/test_cluster_details_cache.py
runs it on the bed)."""

import threading
from datetime import UTC, datetime, timedelta

import pytest

from hcc_federation.clusters.details import DetailsCache
from hcc_federation.clusters.registry import ClusterCommandFailed
from hcc_federation.remote.errors import RemoteTimeout
from hcc_federation.settings import SettingsError, parse_settings
from tests.helpers import BASE_SETTINGS

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.t - 1000.0)


class Reads:
    """A read() that counts its calls and answers a new dict each time (``nodes`` nodes)."""

    def __init__(self, nodes: int = 1) -> None:
        self.count = 0
        self.nodes = nodes

    def __call__(self) -> dict:
        self.count += 1
        return {"nodes": [{"name": f"n{i}"} for i in range(self.nodes)], "read": self.count}


def cache(ttls=None, max_entries=10) -> tuple[DetailsCache, Clock]:
    clock = Clock()
    return DetailsCache(ttls or {"alpha": 5.0}, max_entries, clock=clock, now=clock.wall), clock


def test_a_snapshot_serves_for_the_window_then_is_read_again():
    c, clock = cache()
    read = Reads()
    first = c.get("alpha", "alice", read, wait=1)
    assert first.as_of == T0 and first.value["read"] == 1
    clock.t += 4.9
    assert c.get("alpha", "alice", read, wait=1) is first
    clock.t += 0.1
    again = c.get("alpha", "alice", read, wait=1)
    assert read.count == 2 and again.value["read"] == 2
    assert again.as_of == T0 + timedelta(seconds=5)


def test_as_of_is_when_the_read_began():
    c, clock = cache()

    def slow_read() -> dict:
        clock.t += 3  # the command takes 3 s
        return {"nodes": []}

    snapshot = c.get("alpha", "alice", slow_read, wait=1)
    assert snapshot.as_of == T0
    # and its age counts from then: 2 s later it is 5 s old, past the window
    clock.t += 2
    assert c.get("alpha", "alice", Reads(), wait=1) is not snapshot


def test_users_and_clusters_have_their_own_snapshots():
    c, _ = cache({"alpha": 5.0, "beta": 5.0})
    read = Reads()
    alice = c.get("alpha", "alice", read, wait=1)
    bob = c.get("alpha", "bob", read, wait=1)
    beta = c.get("beta", "alice", read, wait=1)
    assert read.count == 3 and len({id(alice), id(bob), id(beta)}) == 3
    assert c.get("alpha", "alice", read, wait=1) is alice
    assert c.get("alpha", "bob", read, wait=1) is bob


def test_zero_or_an_unknown_cluster_keeps_nothing():
    c, _ = cache({"alpha": 0.0})
    read = Reads()
    c.get("alpha", "alice", read, wait=1)
    c.get("alpha", "alice", read, wait=1)
    c.get("gamma", "alice", read, wait=1)
    assert read.count == 3 and len(c) == 0


def test_a_failed_read_is_not_kept():
    c, _ = cache()

    def failing() -> dict:
        raise ClusterCommandFailed("sinfo failed")

    with pytest.raises(ClusterCommandFailed):
        c.get("alpha", "alice", failing, wait=1)
    read = Reads()
    c.get("alpha", "alice", read, wait=1)
    assert read.count == 1


def test_the_least_recently_used_goes_first_past_max_entries():
    c, _ = cache(max_entries=2)
    read = Reads()
    c.get("alpha", "alice", read, wait=1)
    c.get("alpha", "bob", read, wait=1)
    c.get("alpha", "alice", read, wait=1)  # alice used again: bob is now the oldest
    c.get("alpha", "carol", read, wait=1)
    assert len(c) == 2 and read.count == 3
    c.get("alpha", "alice", read, wait=1)
    assert read.count == 3
    c.get("alpha", "bob", read, wait=1)
    assert read.count == 4


def test_expired_snapshots_are_dropped_when_another_is_kept():
    c, clock = cache()
    read = Reads()
    c.get("alpha", "alice", read, wait=1)
    c.get("alpha", "bob", read, wait=1)
    clock.t += 6
    c.get("alpha", "carol", read, wait=1)
    assert len(c) == 1


def test_nodes_held_are_bounded(monkeypatch):
    monkeypatch.setattr(DetailsCache, "MAX_NODES", 10)
    c, _ = cache()
    big = Reads(nodes=11)
    c.get("alpha", "alice", big, wait=1)
    assert len(c) == 0  # too big to keep, still answered
    half = Reads(nodes=6)
    c.get("alpha", "alice", half, wait=1)
    c.get("alpha", "bob", half, wait=1)  # 12 nodes: alice's goes
    assert len(c) == 1
    c.get("alpha", "bob", half, wait=1)
    assert half.count == 2


def _misses_at_once(c: DetailsCache, read, n: int, wait: float) -> tuple[list, list]:
    """n threads asking for alice's alpha while ``read`` blocks: the threads, and their snapshots or
    exceptions once joined."""
    out: list = [None] * n

    def ask(i: int) -> None:
        try:
            out[i] = c.get("alpha", "alice", read, wait=wait)
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, out


class BlockingRead:
    """A read that blocks until released, counting its calls; raises ``error`` if set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.count = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.error = error

    def __call__(self) -> dict:
        self.count += 1
        self.started.set()
        self.release.wait(10)
        if self.error is not None:
            raise self.error
        return {"nodes": []}


class CountingCache(DetailsCache):
    """Counts the requests that joined another's read (they wait in _follow)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.following = 0

    def _follow(self, cluster, flight, wait):
        with self._lock:
            self.following += 1
        return super()._follow(cluster, flight, wait)


def counting_cache() -> CountingCache:
    clock = Clock()
    return CountingCache({"alpha": 5.0}, 10, clock=clock, now=clock.wall)


def _wait_for_followers(c: CountingCache, n: int) -> None:
    for _ in range(500):
        if c.following >= n:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"{c.following} requests joined the read, not {n}")


def test_concurrent_misses_share_one_read():
    c = counting_cache()
    read = BlockingRead()
    threads, out = _misses_at_once(c, read, 8, wait=10)
    assert read.started.wait(5)
    _wait_for_followers(c, 7)
    read.release.set()
    for t in threads:
        t.join(10)
    assert read.count == 1
    assert all(o is out[0] for o in out)


def test_waiters_get_a_copy_of_the_failure_and_the_next_request_reads_again():
    c = counting_cache()
    read = BlockingRead(error=ClusterCommandFailed("sinfo failed on cluster alpha: boom"))
    threads, out = _misses_at_once(c, read, 5, wait=10)
    assert read.started.wait(5)
    _wait_for_followers(c, 4)
    read.release.set()
    for t in threads:
        t.join(10)
    assert read.count == 1
    assert all(isinstance(o, ClusterCommandFailed) and "boom" in str(o) for o in out)
    # one object per thread: a shared one would carry one thread's traceback into another's
    assert len({id(o) for o in out}) == 5
    fresh = Reads()
    c.get("alpha", "alice", fresh, wait=1)
    assert fresh.count == 1


def test_a_waiter_gives_up_after_wait_with_a_remote_timeout():
    c, _ = cache()
    read = BlockingRead()
    leader = threading.Thread(target=c.get, args=("alpha", "alice", read, 10))
    leader.start()
    assert read.started.wait(5)
    with pytest.raises(RemoteTimeout, match="alpha"):
        c.get("alpha", "alice", Reads(), wait=0.05)
    read.release.set()
    leader.join(10)
    # the leader's answer was kept all the same
    assert c.get("alpha", "alice", Reads(), wait=1).value == {"nodes": []}


ALPHA = {
    **BASE_SETTINGS,
    "hcc.clusters": "alpha",
    "hcc.cluster.alpha.host": "127.0.0.1",
    "hcc.cluster.alpha.known_hosts": "/etc/ssh/ssh_known_hosts",
}


def test_the_window_is_read_per_cluster():
    assert parse_settings(ALPHA, {}).clusters[0].detail_cache == 5.0
    raw = {**ALPHA, "hcc.cluster.alpha.detail_cache": "0"}
    assert parse_settings(raw, {}).clusters[0].detail_cache == 0.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "must be at least 0"),
        ("soon", "must be a number"),
        ("3601", "must be at most 3600"),
        ("inf", "must be at most 3600"),
        ("nan", "must be at most 3600"),
    ],
)
def test_a_bad_window_names_its_key(value, message):
    with pytest.raises(SettingsError, match=f"hcc.cluster.alpha.detail_cache {message}"):
        parse_settings({**ALPHA, "hcc.cluster.alpha.detail_cache": value}, {})
