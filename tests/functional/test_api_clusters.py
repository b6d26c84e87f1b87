"""Cluster routing through the API: status, sinfo as the caller, both identity modes, failures."""

import re
import threading
import time
from pathlib import Path

import pytest
from webob import Request

from hcc_federation.timefmt import PATTERN
from tests.helpers import cluster_settings, login_token, make_app, run_testbed_up, stop_testbed_daemon


def pool_of(app):
    return app.app.registry.hcc_pool


def test_list_clusters_with_status(app, login):
    r = app.get("/api/v1/clusters", headers=login("alice"), status=200)
    clusters = {c["name"]: c for c in r.json["clusters"]}
    assert set(clusters) == {"alpha", "beta"}
    for c in clusters.values():
        assert c["status"] == "up"
        assert c["description"].startswith("test bed cluster")
        assert re.fullmatch(PATTERN, c["checked_at"])


def test_clusters_need_a_session(app):
    app.get("/api/v1/clusters", status=401)
    app.get("/api/v1/clusters/alpha", status=401)


@pytest.mark.parametrize("name", ["alpha", "beta"])
def test_cluster_detail_read_with_sinfo_as_the_caller(app, login, endpoints, name):
    r = app.get(f"/api/v1/clusters/{name}", headers=login("alice"), status=200)
    body = r.json
    assert body["name"] == name and body["status"] == "up"
    [partition] = body["partitions"]
    assert partition["name"] == endpoints["clusters"][name]["partition"]
    assert partition["default"] is True and partition["state"] == "up"
    assert partition["node_count"] == 1 and partition["cpus"] >= 1
    [node] = body["nodes"]
    assert node["name"] == endpoints["clusters"][name]["node"]
    assert node["memory_mb"] == 1024 and node["partitions"] == [partition["name"]]


@pytest.mark.parametrize(
    "name", ["nope", "ALPHA", "alpha;id", "..", "%2e%2e", "alpha%20beta", "%C3%A5lpha", "a" * 300]
)
def test_unknown_clusters_are_404_envelopes(app, login, name):
    r = app.get(f"/api/v1/clusters/{name}", headers=login("alice"), status=404)
    assert r.json["errors"][0]["name"] == "cluster"


def test_both_identity_modes_on_both_clusters(base_settings, database_url, endpoints, users):
    """The default test app has alpha=password, beta=certificate; this one swaps them."""
    settings = {
        **base_settings,
        **cluster_settings(endpoints, {"alpha": "certificate", "beta": "password"}),
        "hcc.database.url": database_url,
    }
    swapped = make_app(settings)
    token = login_token(swapped, users, "bob")
    for name in ("alpha", "beta"):
        swapped.get(f"/api/v1/clusters/{name}", headers={"Authorization": f"Bearer {token}"}, status=200)


def test_a_second_request_reuses_the_connection(settings, users):
    # the answer is not kept (detail_cache 0): each request runs sinfo, over the pooled connection
    app = make_app({**settings, "hcc.cluster.alpha.detail_cache": "0"})
    headers = {"Authorization": f"Bearer {login_token(app, users, 'bob')}"}
    pool = pool_of(app)
    app.get("/api/v1/clusters/alpha", headers=headers, status=200)
    before = pool.stats()
    app.get("/api/v1/clusters/alpha", headers=headers, status=200)
    after = pool.stats()
    assert after["connects"] == before["connects"]
    assert after["reuses"] > before["reuses"]


@pytest.mark.parametrize("per_user", [1, 3])
def test_twenty_parallel_first_requests_open_one_connection(settings, users, per_user):
    # a new pool: nobody is connected yet; no kept answer, so that all twenty reach the pool
    fresh = make_app(
        {**settings, "hcc.cluster.beta.detail_cache": "0", "hcc.ssh.connections_per_user": str(per_user)}
    )
    token = login_token(fresh, users, "alice")
    wsgi = fresh.app
    statuses = []

    def call():
        req = Request.blank("/api/v1/clusters/beta", headers={"Authorization": f"Bearer {token}"})
        req.remote_addr = "127.0.0.1"
        statuses.append(req.get_response(wsgi).status_int)

    threads = [threading.Thread(target=call) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [200] * 20
    stats = wsgi.registry.hcc_pool.stats()
    if per_user == 1:
        assert stats["connects"] == 1
    else:
        # one first connection for all; the requests that found it busy (all its slots taken)
        # may have joined others, up to the limit
        assert stats["connects"] - stats["joins"] == 1
        assert stats["connects"] <= per_user


def test_a_changed_host_key_is_refused(settings, tmp_path, endpoints, users):
    # beta's host keys under alpha's name: alpha's real key no longer matches
    beta_keys = Path(endpoints["clusters"]["beta"]["known_hosts"]).read_text()
    alpha_port = endpoints["clusters"]["alpha"]["ssh_port"]
    beta_port = endpoints["clusters"]["beta"]["ssh_port"]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(beta_keys.replace(f"[127.0.0.1]:{beta_port}", f"[127.0.0.1]:{alpha_port}"))
    spoofed = make_app({**settings, "hcc.cluster.alpha.known_hosts": str(wrong)})
    token = login_token(spoofed, users, "alice")
    headers = {"Authorization": f"Bearer {token}"}
    r = spoofed.get("/api/v1/clusters/alpha", headers=headers, status=503)
    assert r.json["errors"][0]["name"] == "cluster" and "alpha" in r.json["errors"][0]["description"]
    statuses = {
        c["name"]: c["status"] for c in spoofed.get("/api/v1/clusters", headers=headers).json["clusters"]
    }
    assert statuses == {"alpha": "hostkey_mismatch", "beta": "up"}


def test_a_command_past_its_timeout_is_a_504_and_its_channel_is_closed(settings, users):
    slow = make_app(
        {**settings, "hcc.cluster.alpha.command_prefix": "sleep 30", "hcc.cluster.alpha.command_timeout": "1"}
    )
    token = login_token(slow, users, "alice")
    start = time.monotonic()
    r = slow.get("/api/v1/clusters/alpha", headers={"Authorization": f"Bearer {token}"}, status=504)
    assert time.monotonic() - start < 10
    assert "alpha" in r.json["errors"][0]["description"]
    assert pool_of(slow).stats()["channels_in_use"] == 0


@pytest.mark.slow
def test_a_stopped_sshd_gives_503_for_its_cluster_only_and_heals(settings, users, endpoints):
    # beta's answer is not kept (detail_cache 0): a kept one would be served for its few seconds
    app = make_app({**settings, "hcc.cluster.beta.detail_cache": "0"})
    headers = {"Authorization": f"Bearer {login_token(app, users, 'alice')}"}
    app.get("/api/v1/clusters/beta", headers=headers, status=200)
    pidfile = endpoints["clusters"]["beta"]["sshd_pidfile"]
    stop_testbed_daemon(pidfile, "/usr/sbin/sshd")
    try:
        # sessions already open outlive a stopped listener (each is its own sshd process); a host
        # that goes down takes them too, so the pool's connections are dropped here as well
        pool_of(app).close_all()
        r = app.get("/api/v1/clusters/beta", headers=headers, status=503)
        assert r.json["errors"][0]["name"] == "cluster"
        assert "beta" in r.json["errors"][0]["description"]
        app.get("/api/v1/clusters/alpha", headers=headers, status=200)
    finally:
        run_testbed_up()
    # the same service heals on the next call, without a restart
    app.get("/api/v1/clusters/beta", headers=headers, status=200)


def test_the_service_pool_gets_the_ssh_settings_of_the_ini(base_settings, database_url):
    # hcc.ssh.max_lifetime was parsed and documented but never reached the pool, which kept its own
    # default of 3600 s: a shortened lifetime never made a locked account or a new password reach SSH
    app = make_app(
        {
            **base_settings,
            "hcc.database.url": database_url,
            "hcc.ssh.max_lifetime": "123",
            "hcc.ssh.max_connections": "17",
            "hcc.ssh.idle_timeout": "45",
        }
    )
    pool = app.app.registry.hcc_pool
    assert (pool.max_lifetime, pool.max_connections, pool.idle_timeout) == (123.0, 17, 45.0)
