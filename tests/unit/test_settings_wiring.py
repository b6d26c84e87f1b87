"""Every documented setting, set to a value that is not its default, arrives where it acts in the built app.

The app is built by ``main()`` as pserve builds it, with no server behind it: nothing here connects
anywhere (the database and the directory point at a closed loopback port and are never called
except where a test catches the connect).
"""

import os
import types
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_ssh_public_identity
from webob import Request
from webtest import TestApp

from hcc_federation import main
from hcc_federation.api import client_address
from hcc_federation.auth.custody import session_credential
from hcc_federation.clusters import ClusterAccess
from hcc_federation.files.views import _tree_runner
from hcc_federation.remote.identity import CLOCK_SKEW
from tests.unit.test_settings_readme import TABLE


class _Captured(Exception):
    """Raised by the connect hook: the connection's parameters were seen, no connection is made."""


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("wiring")
    known_hosts = d / "known_hosts"
    known_hosts.write_text("")
    ca_key = d / "ca_key"
    key = ed25519.Ed25519PrivateKey.generate()
    ca_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    os.chmod(ca_key, 0o600)
    template = d / "notebook_job.sh"
    template.write_text("#!/bin/bash\n@COMMAND@ @ARGUMENTS@\n")
    return types.SimpleNamespace(known_hosts=str(known_hosts), ca_key=str(ca_key), template=str(template))


def raw_settings(paths) -> dict[str, str]:
    """Every key of the README's table, none at its default."""
    alpha = "hcc.cluster.alpha."
    return {
        "hcc.database.url": "mysql+mysqldb://hcc:pw@127.0.0.1:9/wiringdb",
        "hcc.database.echo": "true",
        "hcc.database.connect_timeout": "7",
        "hcc.database.read_timeout": "11",
        "hcc.database.write_timeout": "13",
        "hcc.database.pool_size": "3",
        "hcc.database.max_overflow": "2",
        "hcc.database.pool_timeout": "4.5",
        "hcc.database.max_concurrent_calls": "6",
        "hcc.database.call_queue_timeout": "0.25",
        "hcc.database.failure_cooldown": "9",
        "hcc.auth.secret": "k" * 40,
        "hcc.auth.idle_timeout": "600",
        "hcc.auth.max_age": "7200",
        "hcc.auth.throttle_window": "120",
        "hcc.auth.throttle_max_per_user": "3",
        "hcc.auth.throttle_max_per_address": "7",
        "hcc.auth.username_pattern": "^[a-z]{1,8}$",
        "hcc.auth.token_cache": "2.5",
        "hcc.ldap.uri": "ldap://127.0.0.1:9 ldap://127.0.0.2:9",
        "hcc.ldap.bind_dn": "cn=svc,dc=example,dc=org",
        "hcc.ldap.bind_password": "svc-pw",
        "hcc.ldap.timeout": "2.5",
        "hcc.ldap.user_base": "ou=Staff,dc=example,dc=org",
        "hcc.ldap.user_filter": "(&(objectClass=person)(uid={login}))",
        "hcc.ldap.group_base": "ou=Teams,dc=example,dc=org",
        "hcc.ldap.group_filter": "(memberUid={uid})",
        "hcc.ldap.lock_attribute": "nsAccountLock",
        "hcc.ldap.lock_value": "yes",
        "hcc.ldap.fullname_attribute": "displayName",
        "hcc.ldap.email_attribute": "mailAlternateAddress",
        "hcc.ldap.description_attribute": "title",
        "hcc.api.cors_origins": "https://portal.example.org",
        "hcc.api.max_body_bytes": "2048",
        "hcc.api.trusted_proxies": "127.0.0.9",
        "hcc.api.allowed_hosts": "localhost",
        "hcc.files.max_upload_bytes": "4096",
        "hcc.files.link_ttl": "60",
        "hcc.files.tree_timeout": "30",
        "hcc.files.listing_snapshot": "2.5",
        "hcc.jobs.output_poll_interval": "0.5",
        "hcc.jobs.output_follow_max_seconds": "90",
        "hcc.legacy.password_change_window": "120",
        "hcc.operations.retention_days": "3",
        "hcc.operations.sync_max_bytes": "5000",
        "hcc.operations.sync_max_files": "40",
        "hcc.operations.certificate_ttl": "120",
        "hcc.operations.stale_after": "15",
        "hcc.clusters": "alpha beta",
        alpha + "host": "127.0.0.3",
        alpha + "port": "2299",
        alpha + "known_hosts": paths.known_hosts,
        alpha + "description": "Alpha, the big one",
        alpha + "identity": "certificate",
        alpha + "connect_timeout": "3.5",
        alpha + "command_timeout": "20",
        alpha + "output_limit": "4096",
        alpha + "max_sessions": "3",
        alpha + "keepalive": "7",
        alpha + "max_concurrent_requests": "2",
        alpha + "queue_timeout": "0.2",
        alpha + "env": "HCC_A=1 HCC_B=two",
        alpha + "command_prefix": "module load slurm",
        alpha + "filesystems": "SCRATCH=/scratch/$USER HOME=$HOME",
        alpha + "detail_cache": "1.5",
        alpha + "notebook_modes": "batch login",
        alpha + "notebook_command": "/opt/jupyter/bin/jupyter-server --debug",
        alpha + "notebook_command_prefix": "module load jupyter",
        alpha + "notebook_ports": "9000-9009",
        alpha + "notebook_max_per_user": "5",
        alpha + "notebook_max_hours": "3",
        alpha + "notebook_max_cpus": "2",
        alpha + "notebook_max_memory": "1024",
        alpha + "notebook_job_template": paths.template,
        alpha + "notebook_url": "https://jupyter.example.org/{host}/{port}/",
        alpha + "notebook_certfile": "/etc/site/cert.pem",
        alpha + "notebook_keyfile": "/etc/site/key.pem",
        alpha + "transfer_partition": "xfer",
        alpha + "transfer_time_limit": "90",
        "hcc.cluster.beta.host": "127.0.0.4",
        "hcc.cluster.beta.known_hosts": paths.known_hosts,
        "hcc.ssh.ca_key": paths.ca_key,
        "hcc.ssh.max_connections": "9",
        "hcc.ssh.idle_timeout": "45",
        "hcc.ssh.max_lifetime": "120",
        "hcc.ssh.sftp_sessions": "3",
        "hcc.ssh.connections_per_user": "2",
        "hcc.ssh.status_ttl": "2.5",
    }


@pytest.fixture(scope="module")
def app(paths):
    app = main({}, **raw_settings(paths))
    yield app
    app.registry.hcc_pool.close_all()
    app.registry.hcc_engine.dispose()


def _connect_params(registry) -> dict:
    """What the engine passes to mysqlclient when it connects; the connection itself is stopped."""
    from MySQLdb.connections import Connection

    seen: dict = {}

    def capture(self, *args, **kwargs):
        seen.update(kwargs)
        raise _Captured

    real = Connection.__init__
    Connection.__init__ = capture
    try:
        with pytest.raises(_Captured):
            registry.hcc_engine.connect()
    finally:
        Connection.__init__ = real
    return seen


def _status(client: TestApp, method: str, path: str, size: int, content_type: str = "") -> int:
    return client.request(
        path,
        method=method,
        body=b"{" + b" " * (size - 2) + b"}",
        content_type=content_type or None,
        expect_errors=True,
    ).status_int


def _certificate_validity(registry) -> timedelta:
    credential = session_credential(registry, "alice", "secret")
    cert = load_ssh_public_identity(credential["ssh_cert"].encode())
    return timedelta(seconds=cert.valid_before - cert.valid_after)


def _tree_timeout(registry) -> float:
    calls = []

    class Pool:
        def run(self, endpoint, identity, argv, stdin=None, timeout=None):
            calls.append(timeout)

    access = ClusterAccess(Pool(), registry.hcc_clusters.get("alpha"), identity=None)
    _tree_runner(types.SimpleNamespace(registry=registry), access)(["true"])
    return calls[0]


class _FakePool:
    """Records argv and answers like ``du -s`` of a huge tree (or ``sbatch --parsable``)."""

    def __init__(self):
        self.argv = []

    def run(self, endpoint, identity, argv, stdin=None, timeout=None):
        from hcc_federation.remote import CommandResult

        self.argv.append(list(argv))
        out = b"4242\n" if argv[0] == "sbatch" else b"10000000000\t/x\n"
        return CommandResult(tuple(argv), 0, out, b"")


def _sync_limit(registry, what: str) -> int:
    """The limit that check_sync_limits names when it refuses a huge tree (the other limit lifted)."""
    import dataclasses

    from hcc_federation.files.errors import TooBigForRequest
    from hcc_federation.files.views import check_sync_limits

    settings = registry.hcc_settings
    lifted = {"sync_max_files": 0} if what == "bytes" else {"sync_max_bytes": 0}
    only = dataclasses.replace(settings, operations=dataclasses.replace(settings.operations, **lifted))
    access = ClusterAccess(_FakePool(), registry.hcc_clusters.get("alpha"), identity=None)
    request = types.SimpleNamespace(registry=types.SimpleNamespace(hcc_settings=only))
    with pytest.raises(TooBigForRequest) as refused:
        check_sync_limits(request, access, "/x")
    return refused.value.limit


def _sbatch_options(registry) -> list[str]:
    from hcc_federation.operations.service import launch

    pool = _FakePool()
    access = ClusterAccess(pool, registry.hcc_clusters.get("alpha"), identity=None)
    launch(access, "/home/a/.hcc/operations/x")
    return [a for a in pool.argv[0] if a.startswith(("--partition=", "--time="))]


def _retention(registry) -> timedelta:
    from datetime import datetime

    from hcc_federation.scripts.cleanup import operations_cutoff

    now = datetime(2026, 1, 10)
    return now - operations_cutoff(registry.hcc_settings.operations, now)


def _crossing(registry, key: str):
    from hcc_federation.operations.views import crossing_options

    alpha_access = ClusterAccess(_FakePool(), registry.hcc_clusters.get("alpha"), identity=None)
    return crossing_options(types.SimpleNamespace(registry=registry), alpha_access, alpha_access)[key]


def _lifted(registry, attribute):
    return registry.hcc_directory._is_locked_by_attribute({attribute: ["yes"]})


def _client_address(registry) -> str:
    request = Request.blank(
        "/", environ={"REMOTE_ADDR": "127.0.0.9"}, headers={"X-Forwarded-For": "10.1.2.3"}
    )
    request.registry = registry
    return client_address(request)


def alpha(registry):
    return registry.hcc_clusters.get("alpha")


def ldap(registry):
    return registry.hcc_directory.settings


def attributes(registry) -> list[str]:
    return registry.hcc_directory._user_attributes()


# the one value that depends on the test's temporary directory: compared with what was set
KNOWN_HOSTS = object()


# key -> (what the built app does with it, what that must be). Keys of a cluster are checked on alpha.
CHECKS = {
    "hcc.database.url": (lambda r: r.hcc_engine.url.database, "wiringdb"),
    "hcc.database.echo": (lambda r: r.hcc_engine.echo, True),
    "hcc.database.connect_timeout": (lambda r: _connect_params(r)["connect_timeout"], 7),
    "hcc.database.read_timeout": (lambda r: _connect_params(r)["read_timeout"], 11),
    "hcc.database.write_timeout": (lambda r: _connect_params(r)["write_timeout"], 13),
    "hcc.database.pool_size": (lambda r: r.hcc_engine.pool.size(), 3),
    "hcc.database.max_overflow": (lambda r: r.hcc_engine.pool._max_overflow, 2),
    "hcc.database.pool_timeout": (lambda r: r.hcc_engine.pool.timeout(), 4.5),
    "hcc.database.max_concurrent_calls": (lambda r: r.hcc_db_guard.max_concurrent, 6),
    "hcc.database.call_queue_timeout": (lambda r: r.hcc_db_guard.queue_timeout, 0.25),
    "hcc.database.failure_cooldown": (lambda r: r.hcc_db_guard.cooldown, 9),
    "hcc.auth.secret": (
        lambda r: (r.hcc_sessions.settings.secret, r.hcc_throttle.settings.secret),
        (b"k" * 40,) * 2,
    ),
    # use is recorded every idle_timeout / 4 when that is under 60 s
    "hcc.auth.idle_timeout": (lambda r: r.hcc_sessions.touch_interval, timedelta(seconds=60)),
    "hcc.auth.max_age": (_certificate_validity, timedelta(seconds=7200) + CLOCK_SKEW),
    "hcc.auth.throttle_window": (lambda r: r.hcc_throttle.settings.throttle_window, 120),
    "hcc.auth.throttle_max_per_user": (lambda r: r.hcc_throttle.settings.throttle_max_per_user, 3),
    "hcc.auth.throttle_max_per_address": (lambda r: r.hcc_throttle.settings.throttle_max_per_address, 7),
    "hcc.auth.username_pattern": (lambda r: r.hcc_login.username_pattern.pattern, "^[a-z]{1,8}$"),
    "hcc.auth.token_cache": (lambda r: r.hcc_sessions.verified.ttl, 2.5),
    "hcc.ldap.uri": (
        lambda r: [(s.host, s.port) for s in r.hcc_directory._server().servers],
        [("127.0.0.1", 9), ("127.0.0.2", 9)],
    ),
    "hcc.ldap.bind_dn": (lambda r: ldap(r).bind_dn, "cn=svc,dc=example,dc=org"),
    "hcc.ldap.bind_password": (lambda r: ldap(r).bind_password, "svc-pw"),
    # ldap3 takes whole seconds: 2.5 is rounded up
    "hcc.ldap.timeout": (
        lambda r: (
            {s.connect_timeout for s in r.hcc_directory._server().servers},
            r.hcc_directory._connection(None, None).receive_timeout,
        ),
        ({3}, 3),
    ),
    "hcc.ldap.user_base": (lambda r: ldap(r).user_base, "ou=Staff,dc=example,dc=org"),
    "hcc.ldap.user_filter": (
        lambda r: ldap(r).user_filter,
        "(&(objectClass=person)(uid={login}))",
    ),
    "hcc.ldap.group_base": (lambda r: ldap(r).group_base, "ou=Teams,dc=example,dc=org"),
    "hcc.ldap.group_filter": (lambda r: ldap(r).group_filter, "(memberUid={uid})"),
    "hcc.ldap.lock_attribute": (lambda r: _lifted(r, "nsAccountLock"), True),
    "hcc.ldap.lock_value": (lambda r: _lifted(r, "nsAccountLock"), True),
    "hcc.ldap.fullname_attribute": (lambda r: "displayName" in attributes(r), True),
    "hcc.ldap.email_attribute": (
        lambda r: "mailAlternateAddress" in attributes(r),
        True,
    ),
    "hcc.ldap.description_attribute": (lambda r: "title" in attributes(r), True),
    "hcc.api.trusted_proxies": (_client_address, "10.1.2.3"),
    "hcc.files.link_ttl": (lambda r: r.hcc_settings.files.link_ttl, 60),
    "hcc.files.tree_timeout": (_tree_timeout, 30),
    "hcc.files.listing_snapshot": (lambda r: r.hcc_listing_snapshots.ttl, 2.5),
    # they act on a followed job's output: tests/functional/test_api_job_output.py
    "hcc.jobs.output_poll_interval": (lambda r: r.hcc_settings.jobs.output_poll_interval, 0.5),
    "hcc.jobs.output_follow_max_seconds": (lambda r: r.hcc_settings.jobs.output_follow_max_seconds, 90),
    # what the legacy change_password view reads; tests/functional/test_legacy.py shows it refuse past it
    "hcc.legacy.password_change_window": (lambda r: r.hcc_settings.legacy.password_change_window, 120),
    "hcc.operations.sync_max_bytes": (lambda r: _sync_limit(r, "bytes"), 5000),
    "hcc.operations.sync_max_files": (lambda r: _sync_limit(r, "files"), 40),
    "hcc.operations.retention_days": (_retention, timedelta(days=3)),
    "hcc.operations.certificate_ttl": (lambda r: _crossing(r, "certificate_ttl"), 120),
    "hcc.operations.stale_after": (
        lambda r: __import__("hcc_federation.operations.views").operations.views.stale_after(
            types.SimpleNamespace(registry=r)
        ),
        15,
    ),
    "hcc.cluster.<name>.transfer_partition": (lambda r: _sbatch_options(r)[0], "--partition=xfer"),
    "hcc.cluster.<name>.transfer_time_limit": (lambda r: _sbatch_options(r)[1], "--time=90"),
    "hcc.clusters": (lambda r: [c.name for c in r.hcc_clusters], ["alpha", "beta"]),
    "hcc.cluster.<name>.host": (lambda r: alpha(r).endpoint.host, "127.0.0.3"),
    "hcc.cluster.<name>.port": (lambda r: alpha(r).endpoint.port, 2299),
    "hcc.cluster.<name>.known_hosts": (
        lambda r: alpha(r).endpoint.known_hosts,
        KNOWN_HOSTS,
    ),
    "hcc.cluster.<name>.description": (
        lambda r: alpha(r).settings.description,
        "Alpha, the big one",
    ),
    "hcc.cluster.<name>.identity": (
        lambda r: (r.hcc_clusters.uses("certificate"), r.hcc_ca_key is not None),
        (True, True),
    ),
    "hcc.cluster.<name>.connect_timeout": (
        lambda r: alpha(r).endpoint.connect_timeout,
        3.5,
    ),
    "hcc.cluster.<name>.command_timeout": (
        lambda r: alpha(r).endpoint.command_timeout,
        20,
    ),
    "hcc.cluster.<name>.output_limit": (lambda r: alpha(r).endpoint.output_limit, 4096),
    "hcc.cluster.<name>.max_sessions": (lambda r: alpha(r).endpoint.max_sessions, 3),
    "hcc.cluster.<name>.keepalive": (lambda r: alpha(r).endpoint.keepalive, 7),
    "hcc.cluster.<name>.max_concurrent_requests": (lambda r: r.hcc_clusters.bulkhead("alpha").limit, 2),
    "hcc.cluster.<name>.queue_timeout": (lambda r: r.hcc_clusters.bulkhead("alpha").stall_timeout, 0.2),
    "hcc.cluster.<name>.env": (
        lambda r: dict(alpha(r).endpoint.env),
        {"HCC_A": "1", "HCC_B": "two"},
    ),
    "hcc.cluster.<name>.command_prefix": (
        lambda r: alpha(r).endpoint.command_prefix,
        "module load slurm",
    ),
    "hcc.cluster.<name>.filesystems": (
        lambda r: alpha(r).settings.filesystems,
        (("SCRATCH", "/scratch/$USER"), ("HOME", "$HOME")),
    ),
    # where the cache reads it (its effect on the bed: tests/functional/test_cluster_details_cache.py)
    "hcc.cluster.<name>.detail_cache": (lambda r: r.hcc_cluster_details.ttl("alpha"), 1.5),
    # where the notebook service reads them (each one's effect is tested in test_notebooks_commands
    # and tests/functional/test_api_notebooks.py)
    "hcc.cluster.<name>.notebook_modes": (lambda r: alpha(r).settings.notebook_modes, ("batch", "login")),
    "hcc.cluster.<name>.notebook_command": (
        lambda r: alpha(r).settings.notebook_command,
        ("/opt/jupyter/bin/jupyter-server", "--debug"),
    ),
    "hcc.cluster.<name>.notebook_command_prefix": (
        lambda r: alpha(r).settings.notebook_command_prefix,
        "module load jupyter",
    ),
    "hcc.cluster.<name>.notebook_ports": (lambda r: alpha(r).settings.notebook_ports, (9000, 9009)),
    "hcc.cluster.<name>.notebook_max_per_user": (lambda r: alpha(r).settings.notebook_max_per_user, 5),
    "hcc.cluster.<name>.notebook_max_hours": (lambda r: alpha(r).settings.notebook_max_hours, 3),
    "hcc.cluster.<name>.notebook_max_cpus": (lambda r: alpha(r).settings.notebook_max_cpus, 2),
    "hcc.cluster.<name>.notebook_max_memory": (lambda r: alpha(r).settings.notebook_max_memory, 1024),
    "hcc.cluster.<name>.notebook_job_template": (
        lambda r: Path(alpha(r).settings.notebook_job_template).read_text().startswith("#!/bin/bash"),
        True,
    ),
    "hcc.cluster.<name>.notebook_url": (
        lambda r: alpha(r).settings.notebook_url,
        "https://jupyter.example.org/{host}/{port}/",
    ),
    "hcc.cluster.<name>.notebook_certfile": (
        lambda r: alpha(r).settings.notebook_certfile,
        "/etc/site/cert.pem",
    ),
    "hcc.cluster.<name>.notebook_keyfile": (
        lambda r: alpha(r).settings.notebook_keyfile,
        "/etc/site/key.pem",
    ),
    "hcc.ssh.ca_key": (lambda r: r.hcc_ca_key is not None, True),
    "hcc.ssh.max_connections": (lambda r: r.hcc_pool.max_connections, 9),
    "hcc.ssh.idle_timeout": (lambda r: r.hcc_pool.idle_timeout, 45),
    "hcc.ssh.max_lifetime": (lambda r: r.hcc_pool.max_lifetime, 120),
    "hcc.ssh.sftp_sessions": (lambda r: r.hcc_pool.sftp_sessions, 3),
    "hcc.ssh.connections_per_user": (lambda r: r.hcc_pool.connections_per_user, 2),
    "hcc.ssh.status_ttl": (lambda r: r.hcc_clusters.status_ttl, 2.5),
}


@pytest.mark.parametrize("key", sorted(CHECKS))
def test_the_setting_arrives_where_it_acts(app, paths, key):
    observe, expected = CHECKS[key]
    if expected is KNOWN_HOSTS:
        expected = paths.known_hosts
    assert observe(app.registry) == expected


def test_every_documented_key_is_set_and_checked(paths):
    """A key added to the README without a check here, or not set above, fails this test."""
    documented = set(TABLE)
    raw = {k.replace("hcc.cluster.alpha.", "hcc.cluster.<name>.") for k in raw_settings(paths)}
    # besides those of the body-size and CORS tests below
    checked = set(CHECKS) | {
        "hcc.api.max_body_bytes",
        "hcc.files.max_upload_bytes",
        "hcc.api.cors_origins",
        "hcc.api.allowed_hosts",
    }
    assert documented <= raw
    assert documented == checked


def test_allowed_hosts_act(app):
    client = TestApp(app, extra_environ={"REMOTE_ADDR": "127.0.0.1"}, lint=False)
    assert client.get("/api/v1/openapi.json", headers={"Host": "localhost:8443"}).status_int == 200
    refused = client.get("/api/v1/openapi.json", headers={"Host": "example.org"}, expect_errors=True)
    assert refused.status_int == 400 and refused.json["errors"][0]["name"] == "Host"


def test_body_limits_act(app):
    client = TestApp(app, extra_environ={"REMOTE_ADDR": "127.0.0.1"}, lint=False)
    # a JSON body: hcc.api.max_body_bytes (2048, not 1 MiB)
    assert _status(client, "POST", "/api/v1/sessions", 3000, content_type="application/json") == 413
    assert _status(client, "POST", "/api/v1/sessions", 1500, content_type="application/json") == 400
    # a file's bytes: hcc.files.max_upload_bytes (4096), not the JSON limit
    upload = "/api/v1/clusters/alpha/files/content?path=/tmp/x"
    assert _status(client, "PUT", upload, 5000) == 413
    assert _status(client, "PUT", upload, 3000) == 401


def test_cors_origins_act(app):
    client = TestApp(app, extra_environ={"REMOTE_ADDR": "127.0.0.1"}, lint=False)
    preflight = {"Access-Control-Request-Method": "GET"}
    allowed = client.options("/api/v1/me", headers={"Origin": "https://portal.example.org", **preflight})
    assert allowed.status_int == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://portal.example.org"
    client.options("/api/v1/me", headers={"Origin": "https://other.example.org", **preflight}, status=403)
