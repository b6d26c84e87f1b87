"""The service under faults on the links to its dependencies, made by the tests' own proxy.

Everything here breaks one link through tests/faultproxy.py, never a daemon of the shared test bed,
and runs the app under a real waitress server (tests/liveserver.py) where threads matter: what is
asserted is what a user sees (status, the error envelope, how long it took) and that nothing is lost.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.engine import make_url

from tests.faultproxy import FaultProxy
from tests.helpers import wait_for
from tests.liveserver import live_server

# ------------------------------------------------------------------------------------- database

DB_READ_TIMEOUT = 2
DB_COOLDOWN = 2.0


@pytest.fixture
def mysql_proxy(database_url):
    url = make_url(database_url)
    with FaultProxy(url.host, url.port) as proxy:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


@pytest.mark.parametrize("database_url", ["mysql"], indirect=True)
def test_a_silent_database_gives_503_in_bounded_time_and_spares_routes_without_it(
    base_settings, mysql_proxy, users
):
    proxy, url = mysql_proxy
    settings = {
        **base_settings,
        "hcc.database.url": url,
        "hcc.database.connect_timeout": "1",
        "hcc.database.read_timeout": str(DB_READ_TIMEOUT),
        "hcc.database.write_timeout": "2",
        "hcc.database.max_concurrent_calls": "4",
        "hcc.database.call_queue_timeout": "0.3",
        "hcc.database.failure_cooldown": str(DB_COOLDOWN),
    }
    with live_server(settings, threads=8) as server:
        token = server.login("alice", users["alice"]["password"])
        assert server.call("GET", "/api/v1/sessions/current", token=token).status == 200

        proxy.mode = "blackhole"
        login = {"username": "bob", "password": users["bob"]["password"]}
        with ThreadPoolExecutor(max_workers=14) as pool:
            # more requests that need the database than waitress has threads
            stuck = [
                pool.submit(server.call, "GET", "/api/v1/sessions/current", token=token, timeout=20)
                for _ in range(10)
            ]
            stuck += [
                pool.submit(server.call, "POST", "/api/v1/sessions", body=login, timeout=20) for _ in range(3)
            ]
            time.sleep(0.2)  # let them take the threads first
            openapi = server.call("GET", "/api/v1/openapi.json", timeout=20)
            health = server.call("GET", "/api/v1/health", timeout=20)
            answers = [f.result() for f in stuck]

        # routes that do not need the database kept answering meanwhile
        assert openapi.status == 200 and openapi.seconds < 1.5, (openapi.status, openapi.seconds)
        # health says so within its own timeout (3 s)
        assert health.status == 503 and health.seconds < 4.5, (health.status, health.seconds)
        assert "database" in {e["name"] for e in health.json["errors"]}
        for answer in answers:
            assert answer.status == 503, answer.body
            assert answer.is_envelope() and answer.json["errors"][0]["name"] == "database"
            assert "Retry-After" in answer.headers
            # bounded by the read timeout (a ping on a pooled connection), whatever the queue
            assert answer.seconds < DB_READ_TIMEOUT + 2.5, answer.seconds

        # heals without a restart once the link is back
        proxy.mode = "pass"
        healed = wait_for(
            lambda: server.call("GET", "/api/v1/sessions/current", token=token).status == 200,
            timeout=DB_COOLDOWN + 10,
            interval=0.2,
        )
        assert healed
        assert server.call("GET", "/api/v1/health").status == 200
