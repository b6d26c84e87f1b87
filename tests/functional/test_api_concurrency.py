"""Many concurrent calls of one user on one cluster share one SSH connection: beyond its session slots
(and beyond sshd's MaxSessions, 10 on the bed) they queue, and none fails for it."""

import os
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import alice_work_dir, login_token, make_app

CALLS = 30
BIG = os.urandom(2 * 1024 * 1024)  # above SMALL_DOWNLOAD: streamed by dd on an exec channel
SMALL = b"small\n" * 100


@pytest.fixture
def work(users):
    with alice_work_dir(users, "hcc-api-concurrency") as path:
        for name, data in (("small.txt", SMALL), ("big.bin", BIG)):
            (path / name).write_bytes(data)
            os.chown(path / name, users["alice"]["uid"], -1)
        yield str(path)


def calls(work: str) -> list[tuple[str, bytes | None]]:
    """Listing and stat (SFTP channels), small read (SFTP), big read (exec channel), jobs (exec)."""
    base = "/api/v1/clusters/alpha"

    def q(path: str) -> str:
        return urllib.parse.urlencode({"path": path})

    mix = [
        (f"{base}/files?{q(work)}", None),
        (f"{base}/files?{q(work + '/small.txt')}", None),
        (f"{base}/files/content?{q(work + '/small.txt')}", SMALL),
        (f"{base}/files/content?{q(work + '/big.bin')}", BIG),
        (f"{base}/jobs", None),
    ]
    return [mix[i % len(mix)] for i in range(CALLS)]


def run_at_once(app, headers: dict, work: str) -> tuple[list[tuple[int, str]], int]:
    """Every call at once, each in its own thread: (status, url) of those that failed, and the most
    channels the pool had open at one time."""
    pool = app.app.registry.hcc_pool
    start = threading.Barrier(CALLS)
    done = threading.Event()
    peak = 0

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.001):
            peak = max(peak, pool.stats()["channels_in_use"])

    def call(item: tuple[str, bytes | None]) -> tuple[int, str] | None:
        url, expected = item
        start.wait()
        response = app.get(url, headers=headers, expect_errors=True)
        ok = response.status_int == 200 and (expected is None or response.body == expected)
        return None if ok else (response.status_int, url)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(CALLS) as executor:
            failed = [r for r in executor.map(call, calls(work)) if r is not None]
    finally:
        done.set()
        watcher.join()
    return failed, peak


# The cluster's request bulkhead (4 at once by default) would keep the calls from ever reaching
# the SSH pool's channel limit: these tests are about the pool, so it lets all thirty in.
ALL_AT_ONCE = {"hcc.cluster.alpha.max_concurrent_requests": str(CALLS)}


@pytest.mark.parametrize("per_user", [1, 3])
def test_thirty_concurrent_calls_of_one_session_all_succeed(settings, users, work, per_user):
    app = make_app({**settings, **ALL_AT_ONCE, "hcc.ssh.connections_per_user": str(per_user)})
    try:
        headers = {"Authorization": f"Bearer {login_token(app, users, 'alice')}"}
        failed, peak = run_at_once(app, headers, work)
        assert failed == []
        endpoint = app.app.registry.hcc_clusters.get("alpha").endpoint
        stats = app.app.registry.hcc_pool.stats()
        if per_user == 1:
            # the slots were all taken at some point, so calls did wait for one; none was over the limit
            assert peak == endpoint.max_sessions
        else:
            # the first connection's slots were all taken, and no connection went over its limit
            assert 1 <= stats["connects"] <= per_user
            assert endpoint.max_sessions <= peak <= stats["connects"] * endpoint.max_sessions
        assert stats["channels_in_use"] == 0
    finally:
        app.app.registry.hcc_pool.close_all()


def test_slots_above_sshds_max_sessions_still_never_fail(settings, users, work, database_url):
    if "mysql" in database_url:
        pytest.skip("the SSH pool does not depend on the registry database: once is enough")
    # a pool told to open 16 channels where sshd allows 10: sshd refuses the 11th ("open failed"),
    # and the pool must wait for one to close rather than fail the request
    # (on one connection per user: extra connections would take the load off the first one)
    app = make_app(
        {
            **settings,
            **ALL_AT_ONCE,
            "hcc.cluster.alpha.max_sessions": "16",
            "hcc.ssh.connections_per_user": "1",
        }
    )
    try:
        headers = {"Authorization": f"Bearer {login_token(app, users, 'alice')}"}
        failed, peak = run_at_once(app, headers, work)
        assert failed == []
        # more than 10 at once, and sshd did refuse some: the pool waited and tried again
        assert peak > 10
        assert app.app.registry.hcc_pool.stats()["open_retries"] > 0
    finally:
        app.app.registry.hcc_pool.close_all()
