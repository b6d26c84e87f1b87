"""The functional tests' fixtures, which start from the real test bed: its endpoints.json names every
server and credential. The bed gate lives here, so that tests/unit runs on a machine with only the venv."""

import json
import os
import secrets
import socket
from pathlib import Path

import pytest

from tests.helpers import cluster_settings, login_token, make_app, migrate

ENDPOINTS = Path(os.environ.get("HCC_TESTBED_ENDPOINTS", "/var/lib/hcc-testbed/endpoints.json"))
# HCC_LIVE=apache (the bed's Apache mod_wsgi) or replicas (scripts/replicas.sh: HAProxy and two pserve):
# the `app` fixture then sends every request to that live service (scripts/test-live.sh runs a set)
LIVE = os.environ.get("HCC_LIVE", "")
START_HINT = "bash scripts/testbed/install.sh && bash scripts/testbed/up.sh"


def _down_servers(endpoints: dict) -> list[str]:
    """The bed's servers that do not accept a TCP connection on 127.0.0.1."""
    ldap_port = int(endpoints["ldap"]["uri"].rsplit(":", 1)[1])
    servers = {"MariaDB": endpoints["mysql"]["port"], "slapd": ldap_port}
    servers.update({f"sshd of {name}": c["ssh_port"] for name, c in endpoints["clusters"].items()})
    down = []
    for name, port in servers.items():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            down.append(f"{name} (port {port})")
    return down


def pytest_configure(config):
    # Stop at once, loudly, when the bed is missing or half down: a suite that silently skipped
    # or failed every real test for that reason would say nothing useful.
    if not ENDPOINTS.is_file():
        pytest.exit(
            f"the test bed is not up ({ENDPOINTS} is missing); start it with: {START_HINT}", returncode=3
        )
    down = _down_servers(json.loads(ENDPOINTS.read_text()))
    if down:
        pytest.exit(
            f"the test bed is not up: {', '.join(down)} not answering; start it with: {START_HINT}",
            returncode=3,
        )


@pytest.fixture(scope="session")
def endpoints() -> dict:
    return json.loads(ENDPOINTS.read_text())


@pytest.fixture(scope="session")
def users(endpoints) -> dict:
    """Test users by name: name, uid, password, cn, locked, dn, key."""
    return {u["name"]: u for u in endpoints["users"]}


@pytest.fixture(scope="session")
def clusters(endpoints) -> dict:
    """Test clusters by name: ssh_host, ssh_port, known_hosts, slurm_conf, node, partition, ..."""
    return endpoints["clusters"]


# --------------------------------------------------------------------------------------------
# The service under test: the same functional tests run against SQLite and against MariaDB.


@pytest.fixture(scope="session")
def hosting(endpoints) -> dict:
    """The hosted service's endpoints (hosting.json beside endpoints.json, written by up.sh)."""
    path = Path(endpoints["state_dir"]) / "hosting.json"
    if not path.is_file():
        pytest.fail(f"the bed has no hosted service ({path} is missing): run scripts/testbed/up.sh")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def live(request) -> dict | None:
    """The hosted service under test (HCC_LIVE), or None for the in-process app."""
    if not LIVE:
        return None
    if LIVE not in ("apache", "replicas"):
        pytest.exit(f"HCC_LIVE={LIVE!r}: the hosted services are apache and replicas", 3)
    hosting = request.getfixturevalue("hosting")
    return {**hosting[LIVE], "tls_ca": hosting["tls_ca"], "auth_secret": hosting["auth_secret"]}


@pytest.fixture(scope="session", params=["live"] if LIVE else ["sqlite", "mysql"])
def database_url(request, endpoints, tmp_path_factory, live):
    """A fresh, migrated registry database of each kind for this test run (live: the server's own)."""
    if live is not None:
        yield live["database_url"]
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'registry.sqlite'}"
        migrate(url)
        yield url
        return
    import MySQLdb

    m = endpoints["mysql"]
    # the service's user may create hccfed_* databases (scripts/testbed/up.sh grants it)
    name = f"{m['database']}_test_{secrets.token_hex(4)}"
    conn = MySQLdb.connect(host=m["host"], port=m["port"], user=m["user"], password=m["password"])
    conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    url = f"mysql+mysqldb://{m['user']}:{m['password']}@{m['host']}:{m['port']}/{name}?charset=utf8mb4"
    try:
        migrate(url)
        yield url
    finally:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.fixture(scope="session")
def base_settings(endpoints) -> dict:
    """The app's hcc.* settings for the test bed, as an ini would hold them."""
    ldap = endpoints["ldap"]
    return {
        "hcc.auth.secret": "test-secret-" + "x" * 40,
        "hcc.ldap.uri": ldap["uri"],
        "hcc.ldap.bind_dn": ldap["bind_dn"],
        "hcc.ldap.bind_password": ldap["bind_password"],
        "hcc.ldap.user_base": ldap["people"],
        "hcc.ldap.group_base": ldap["base"],
        "hcc.api.cors_origins": "https://portal.example.org",
        **cluster_settings(endpoints, {"alpha": "password", "beta": "certificate"}),
    }


@pytest.fixture(scope="session")
def settings(base_settings, database_url, live) -> dict:
    if live is not None:
        # what the hosted service runs with (scripts/testbed/templates/hcc-service.ini)
        return {**base_settings, "hcc.database.url": database_url, "hcc.auth.secret": live["auth_secret"]}
    return {**base_settings, "hcc.database.url": database_url}


@pytest.fixture(scope="session")
def app(settings, live):
    """The WSGI app wrapped in WebTest, once per database kind; or the live service behind a proxy."""
    if live is not None:
        from tests.helpers import ContractTestApp
        from tests.liveproxy import LiveProxy

        return ContractTestApp(LiveProxy(live["url"], cafile=live["tls_ca"]))
    return make_app(settings)


@pytest.fixture(autouse=True)
def _forget_login_attempts(request):
    """Throttling counts failures across tests; each test starts with a clean count."""
    yield
    if "database_url" not in request.fixturenames:
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(request.getfixturevalue("database_url"))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM login_attempts"))
    engine.dispose()


@pytest.fixture
def login(app, users):
    """login(name) -> the Authorization headers of a fresh session of that test user."""

    def _login(name: str = "alice", **environ) -> dict:
        return {"Authorization": f"Bearer {login_token(app, users, name, environ or None)}"}

    return _login
