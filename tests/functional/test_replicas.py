"""Two replicas of the service on one MariaDB database behind HAProxy (scripts/replicas.sh): nothing
is replica-local, and one replica killed mid-run costs only the requests it held."""

from __future__ import annotations

import http.client
import secrets
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import ldap3
import pytest
from sqlalchemy import create_engine, text
from webtest import TestApp

from hcc_federation.settings import AuthSettings
from tests.helpers import ROOT, ContractTestApp, jobs_cancelled_afterwards, wait_for
from tests.liveproxy import LiveProxy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def replicas(hosting) -> dict:
    # idempotent: starts only what is not running (about 4 s from nothing)
    subprocess.run(
        ["bash", str(ROOT / "scripts/replicas.sh"), "up"], check=True, capture_output=True, timeout=120
    )
    return hosting["replicas"]


@pytest.fixture(scope="module")
def one(replicas) -> ContractTestApp:
    return ContractTestApp(LiveProxy(replicas["replicas"][0]["url"]))


@pytest.fixture(scope="module")
def other(replicas) -> ContractTestApp:
    return ContractTestApp(LiveProxy(replicas["replicas"][1]["url"]))


@pytest.fixture(autouse=True)
def _forget_replica_login_attempts(replicas):
    yield
    engine = create_engine(replicas["database_url"])
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM login_attempts"))
    engine.dispose()


def _bearer(app, name: str, password: str) -> dict:
    body = {"username": name, "password": password}
    return {"Authorization": f"Bearer {app.post_json('/api/v1/sessions', body, status=201).json['token']}"}


def test_a_login_on_one_replica_serves_every_call_on_the_other(one, other, users, clusters, tmp_path):
    alice = _bearer(one, "alice", users["alice"]["password"])
    assert other.get("/api/v1/me", headers=alice).json["username"] == "alice"
    assert other.get("/api/v1/sessions/current", headers=alice).json["username"] == "alice"
    # a file written through one, read and linked through the other, the link fetched on the first
    path = f"/tmp/replicas-{secrets.token_hex(4)}.txt"
    one.put(f"/api/v1/clusters/alpha/files/content?path={path}", b"shared", headers=alice, status=201)
    try:
        assert other.get(f"/api/v1/clusters/alpha/files/content?path={path}", headers=alice).body == b"shared"
        link = other.post_json(
            "/api/v1/clusters/alpha/files/links", {"path": path}, headers=alice, status=201
        )
        # the link names the replica that made it; any replica serves it
        assert one.get(urllib.parse.urlsplit(link.json["url"]).path).body == b"shared"
    finally:
        one.delete(f"/api/v1/clusters/alpha/files?path={path}", headers=alice, status=204)
    # the job registry: submitted through one, seen and cancelled through the other
    with jobs_cancelled_afterwards(clusters) as jobs:
        body = {"script": "#!/bin/bash\nsleep 60\n", "work_dir": "/tmp", "name": "replicas"}
        job = one.post_json("/api/v1/clusters/alpha/jobs", body, headers=alice, status=201).json
        jobs.append(("alpha", job["id"]))
        assert other.get(f"/api/v1/clusters/alpha/jobs/{job['id']}", headers=alice).json["id"] == job["id"]
        other.delete(f"/api/v1/clusters/alpha/jobs/{job['id']}", headers=alice, status=204)
    # logged out on the other: over there at once, and on this one within hcc.auth.token_cache (the
    # hosted ini keeps the default), which had just verified the token
    other.delete("/api/v1/sessions/current", headers=alice, status=204)
    other.get("/api/v1/me", headers=alice, status=401)
    assert wait_for(
        lambda: one.get("/api/v1/me", headers=alice, expect_errors=True).status_int == 401,
        timeout=AuthSettings.token_cache + 3,
        interval=0.25,
    )


def test_a_notebook_started_on_one_replica_is_read_and_stopped_on_the_other(one, other, replicas, users):
    # alpha: a password cluster, so the other replica also unseals the session's credential
    alice = _bearer(one, "alice", users["alice"]["password"])
    url = "/api/v1/clusters/alpha/notebooks"
    started = one.post_json(url, {"mode": "login", "hours": 1}, headers=alice, status=201).json
    nb_url = f"{url}/{started['id']}"
    try:

        def settled():
            body = other.get(nb_url, headers=alice).json
            return body if body["state"] in ("running", "failed") else None

        settled.__name__ = f"notebook {started['id']} running or failed"
        running = wait_for(settled, timeout=90, interval=1.0)
        assert running["state"] == "running", running
        # the same notebook and token from either replica: the registry and its seal are shared
        assert one.get(nb_url, headers=alice).json["url"] == running["url"]
        listed = other.get("/api/v1/notebooks", headers=alice).json["notebooks"]
        assert started["id"] in [nb["id"] for nb in listed]
    finally:
        other.delete(nb_url, headers=alice, status=204)
        engine = create_engine(replicas["database_url"])
        with engine.connect() as conn:
            folder = conn.execute(
                text("SELECT folder FROM notebooks WHERE id = :id"), {"id": started["id"]}
            ).scalar()
        engine.dispose()
        if folder:
            subprocess.run(["rm", "-rf", "--", folder], check=False)
    stopped = one.get(nb_url, headers=alice).json
    assert stopped["state"] == "stopped" and stopped["url"] is None


def test_failed_logins_count_on_every_replica(one, other):
    wrong = {"username": "bob", "password": "wrong"}
    for i in range(5):  # hcc.auth.throttle_max_per_user: 5
        (one if i % 2 else other).post_json("/api/v1/sessions", wrong, status=401)
    assert one.post_json("/api/v1/sessions", wrong, status=429).headers["Retry-After"]
    other.post_json("/api/v1/sessions", wrong, status=429)


def test_a_password_change_on_one_replica_ends_the_sessions_on_both(one, other, users, endpoints):
    old, new = users["bob"]["password"], "bob-replica-pw-3"
    on_one, on_other = _bearer(one, "bob", old), _bearer(other, "bob", old)
    try:
        body = {"current_password": old, "new_password": new}
        one.put_json("/api/v1/me/password", body, headers=on_one, status=204)
        # within the token cache's bound on the replica that did not make the change
        bound = AuthSettings.token_cache + 2
        for app in (one, other):
            for headers in (on_one, on_other):
                wait_for(
                    lambda app=app, headers=headers: (
                        app.get("/api/v1/me", headers=headers, expect_errors=True).status_int == 401
                    ),
                    bound,
                    0.2,
                )
        other.get("/api/v1/me", headers=_bearer(other, "bob", new))
    finally:
        ldap = endpoints["ldap"]
        host, port = ldap["uri"].removeprefix("ldap://").split(":")
        conn = ldap3.Connection(
            ldap3.Server(host, port=int(port)), ldap["admin_dn"], ldap["admin_password"], auto_bind=True
        )
        conn.extend.standard.modify_password(user=users["bob"]["dn"], new_password=old)
        conn.unbind()


def test_one_replica_killed_mid_run_costs_only_its_requests_in_flight(replicas, users):
    balanced = ContractTestApp(LiveProxy(replicas["url"]))
    alice = _bearer(balanced, "alice", users["alice"]["password"])
    clients, errors, served, stop = 4, [], [], threading.Event()

    def client():
        # HAProxy's own 502 for a request cut on the dead replica is not the service's answer
        app = TestApp(LiveProxy(replicas["url"], timeout=30))
        while not stop.is_set():
            try:
                r = app.get("/api/v1/clusters/alpha/files?path=/tmp", headers=alice, expect_errors=True)
            except http.client.HTTPException:
                # an answer whose body the kill cut after HAProxy passed its headers on: a request
                # that was in flight on the dead replica, which HAProxy cannot turn into a 502
                errors.append((time.monotonic(), "cut"))
                continue
            (served if r.status_int == 200 else errors).append((time.monotonic(), r.status_int))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(served) >= 20, timeout=60, interval=0.1)
        victim = replicas["replicas"][1]["pidfile"]
        pid = int(Path(victim).read_text())
        killed_at = time.monotonic()
        subprocess.run(["kill", "-KILL", str(pid)], check=True)
        # HAProxy sees it down within 2 checks 0.5 s apart; meanwhile it retries refused connections
        wait_for(lambda: len([s for s in served if s[0] > killed_at + 3]) >= 40, timeout=60, interval=0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        subprocess.run(
            ["bash", str(ROOT / "scripts/replicas.sh"), "up"], check=True, capture_output=True, timeout=120
        )
    # at most the requests each client had in flight on the dead replica when it died
    assert len(errors) <= clients, errors
    assert all(status in (502, 503, "cut") for _, status in errors), errors
    assert all(at < killed_at + 3 for at, _ in errors), errors
