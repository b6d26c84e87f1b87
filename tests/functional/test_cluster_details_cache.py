"""GET /clusters/{cluster} keeps each caller's answer for hcc.cluster.<name>.detail_cache seconds: on the
real bed, counting the sinfo runs that reach the cluster (ClusterAccess.run wrapped, the command still
runs for real)."""

import re
import threading
import time

import pytest
from webob import Request

from hcc_federation.clusters import ClusterAccess
from hcc_federation.timefmt import PATTERN
from tests.helpers import login_token, make_app


class SinfoRuns:
    """Counts the sinfo commands run through ClusterAccess (by anyone, on any cluster); ``delay``
    holds each one back first, ``fail_next`` turns the next ones into a sinfo that fails for real."""

    def __init__(self, monkeypatch) -> None:
        self.count = 0
        self.delay = 0.0
        self.fail_next = 0
        self._lock = threading.Lock()
        real_run = ClusterAccess.run

        def run(access, argv, stdin=None, timeout=None):
            if argv and argv[0] == "sinfo":
                with self._lock:
                    self.count += 1
                    failing = self.fail_next > 0
                    self.fail_next -= failing
                time.sleep(self.delay)
                if failing:
                    argv = ["sinfo", "--no-such-option"]
            return real_run(access, argv, stdin=stdin, timeout=timeout)

        monkeypatch.setattr(ClusterAccess, "run", run)


@pytest.fixture
def sinfo_runs(monkeypatch) -> SinfoRuns:
    return SinfoRuns(monkeypatch)


def app_with(settings: dict, users: dict, **detail_cache: str):
    """An app of its own (its own cache) with the given hcc.cluster.<name>.detail_cache, and a
    function giving the Authorization headers of a fresh session of a test user on it."""
    app = make_app({**settings, **{f"hcc.cluster.{n}.detail_cache": v for n, v in detail_cache.items()}})

    def headers(name: str = "alice") -> dict:
        return {"Authorization": f"Bearer {login_token(app, users, name)}"}

    return app, headers


def test_an_answer_is_served_again_within_the_window(settings, users, sinfo_runs):
    app, headers = app_with(settings, users, alpha="60")
    alice = headers("alice")
    first = app.get("/api/v1/clusters/alpha", headers=alice, status=200).json
    assert sinfo_runs.count == 1
    assert re.fullmatch(PATTERN, first["details_as_of"])
    # another session of the same person is served the same answer, with the same shape and age
    second = app.get("/api/v1/clusters/alpha", headers=headers("alice"), status=200).json
    assert sinfo_runs.count == 1
    assert second == first
    assert [p["name"] for p in second["partitions"]] and [n["name"] for n in second["nodes"]]
    # a cluster's window is its own: beta's first answer runs its own sinfo
    app.get("/api/v1/clusters/beta", headers=alice, status=200)
    assert sinfo_runs.count == 2


def test_an_expired_answer_is_read_again(settings, users, sinfo_runs):
    # (that an answer within its window is served again is the first test's; this one only waits)
    app, headers = app_with(settings, users, alpha="1")
    alice = headers()
    first = app.get("/api/v1/clusters/alpha", headers=alice, status=200).json
    assert sinfo_runs.count == 1
    time.sleep(1.1)
    later = app.get("/api/v1/clusters/alpha", headers=alice, status=200).json
    assert sinfo_runs.count == 2
    # whole seconds: the new read is at least as recent as the first
    assert later["details_as_of"] >= first["details_as_of"]
    assert later["partitions"] == first["partitions"]


def test_zero_reads_on_every_request_for_that_cluster_only(settings, users, sinfo_runs):
    app, headers = app_with(settings, users, alpha="0", beta="60")
    alice = headers()
    for _ in range(3):
        body = app.get("/api/v1/clusters/alpha", headers=alice, status=200).json
        assert re.fullmatch(PATTERN, body["details_as_of"])
    assert sinfo_runs.count == 3
    for _ in range(3):
        app.get("/api/v1/clusters/beta", headers=alice, status=200)
    assert sinfo_runs.count == 4


def test_one_persons_answer_is_never_served_to_another(settings, users, sinfo_runs):
    app, headers = app_with(settings, users, alpha="60")
    alice, bob = headers("alice"), headers("bob")
    mine = app.get("/api/v1/clusters/alpha", headers=alice, status=200).json
    theirs = app.get("/api/v1/clusters/alpha", headers=bob, status=200).json
    assert sinfo_runs.count == 2
    assert {"name": "HOME", "path": "/home/alice"} in mine["filesystems"]
    assert {"name": "HOME", "path": "/home/bob"} in theirs["filesystems"]
    # each one's own answer is kept (the cluster's status is the cluster's: bob's sinfo, the later
    # one, is its last check for both)
    for headers_, kept in ((alice, mine), (bob, theirs)):
        again = app.get("/api/v1/clusters/alpha", headers=headers_, status=200).json
        assert again == {**kept, "checked_at": theirs["checked_at"]}
    assert sinfo_runs.count == 2


def concurrent_gets(app, headers: dict, url: str, n: int) -> list[tuple[int, dict]]:
    """n GETs of url released at once, each in its own thread: (status, JSON body) of each."""
    start = threading.Barrier(n)
    out: list[tuple[int, dict]] = []

    def call() -> None:
        req = Request.blank(url, headers=headers)
        req.remote_addr = "127.0.0.1"
        start.wait()
        response = req.get_response(app.app)
        out.append((response.status_int, response.json))

    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_concurrent_misses_run_one_sinfo(settings, users, sinfo_runs):
    app, headers = app_with(settings, users, alpha="60")
    # the first sinfo is held back long enough for all the others to arrive while it runs
    sinfo_runs.delay = 1.5
    answers = concurrent_gets(app, headers(), "/api/v1/clusters/alpha", 6)
    assert [status for status, _ in answers] == [200] * 6
    assert sinfo_runs.count == 1
    assert all(body == answers[0][1] for _, body in answers)


def test_a_failed_read_is_shared_by_its_waiters_and_never_kept(settings, users, sinfo_runs):
    app, headers = app_with(settings, users, alpha="60")
    alice = headers()
    sinfo_runs.delay, sinfo_runs.fail_next = 1.5, 1
    answers = concurrent_gets(app, alice, "/api/v1/clusters/alpha", 4)
    # one sinfo ran, failed for real (an unknown option), and every request that waited for it heard so
    assert sinfo_runs.count == 1
    assert [status for status, _ in answers] == [502] * 4
    for _, body in answers:
        assert body["errors"][0]["name"] == "cluster" and "sinfo failed" in body["errors"][0]["description"]
    # the failure was not kept: the next request reads again, and succeeds
    sinfo_runs.delay = 0
    app.get("/api/v1/clusters/alpha", headers=alice, status=200)
    assert sinfo_runs.count == 2
