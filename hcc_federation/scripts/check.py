"""hcc-check: check a configuration before serving it, the way an admin would by hand.

    hcc-check production.ini

Parses every hcc.* setting, then checks what start-up refuses (an ini, CA key or SQLite file that
other users can read, the development secret in production), then each dependency the service will
need: the database
(reachable, migrated to the newest revision), the directory (the service account binds and reads
the user base), the SSH user CA key (private enough to load), and every cluster (its known_hosts
file names the host, and the host proves that key). Prints one line per check and exits 1 if one
failed, so it fits a deployment pipeline or a cron mail.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import paramiko
from alembic.config import Config
from alembic.script import ScriptDirectory
from pyramid.paster import get_appsettings
from sqlalchemy import text

from .. import deployment
from ..auth.directory import Directory
from ..db import make_engine
from ..remote import ClusterEndpoint, ConnectionPool, load_ca_key
from ..settings import Settings, SettingsError, parse_settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _attempt(name: str, check: Callable[[], str]) -> Check:
    try:
        return Check(name, True, check())
    except Exception as exc:  # a check's failure is its result
        return Check(name, False, getattr(exc, "description", None) or f"{exc.__class__.__name__}: {exc}")


def check_database(settings: Settings, ini_path: str) -> str:
    # the migrations the ini's [alembic] section points at are the ones the code ships
    head = ScriptDirectory.from_config(Config(ini_path)).get_current_head()
    engine = make_engine(settings.database)
    try:
        with engine.connect() as conn:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
    if current != head:
        raise RuntimeError(f"schema at revision {current}, the code needs {head}: run alembic upgrade head")
    return f"reachable, schema at the newest revision ({head})"


def check_directory(settings: Settings) -> str:
    Directory.from_settings(settings).check()
    return f"{settings.ldap.uri}: the service account binds and reads {settings.ldap.user_base}"


def check_ca_key(settings: Settings) -> str:
    load_ca_key(settings.ssh.ca_key)
    return f"{settings.ssh.ca_key} loads and only its owner can read it"


def check_cluster(settings: Settings, name: str, pool: ConnectionPool) -> str:
    cluster = next(c for c in settings.clusters if c.name == name)
    endpoint = ClusterEndpoint.from_settings(cluster)
    if not os.path.isfile(cluster.known_hosts):
        raise RuntimeError(f"known_hosts file {cluster.known_hosts} does not exist")
    if not paramiko.HostKeys(cluster.known_hosts).lookup(endpoint.host_key_name):
        raise RuntimeError(f"{cluster.known_hosts} has no key for {endpoint.host_key_name}")
    probe = pool.probe(endpoint, timeout=min(5.0, cluster.connect_timeout))
    if probe.status != "up":
        raise RuntimeError(f"{endpoint.host_key_name} is {probe.status}: {probe.detail}")
    return (
        f"{endpoint.host_key_name} answers with the key its known_hosts names ({cluster.identity} identity)"
    )


def deployment_checks(settings: Settings, ini_path: str) -> list[Check]:
    """What start-up refuses (or repairs), reported before deployment: private files, a real secret."""
    checks = []
    for what, check, passing in deployment.CHECKS:
        problem = check(settings, ini_path)
        checks.append(Check(what, problem is None, problem or passing))
    return checks


def run_checks(settings: Settings, ini_path: str) -> list[Check]:
    checks = [
        *deployment_checks(settings, ini_path),
        _attempt("database", lambda: check_database(settings, ini_path)),
        _attempt("ldap", lambda: check_directory(settings)),
    ]
    if settings.ssh.ca_key:
        checks.append(_attempt("ssh user CA", lambda: check_ca_key(settings)))
    with ConnectionPool.from_settings(settings) as pool:
        for cluster in settings.clusters:
            checks.append(
                _attempt(
                    f"cluster {cluster.name}", lambda name=cluster.name: check_cluster(settings, name, pool)
                )
            )
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hcc-check", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the service's ini file, e.g. production.ini")
    args = parser.parse_args(argv)
    try:
        settings = parse_settings(get_appsettings(args.config))
    except SettingsError as exc:
        print(f"FAIL settings: {exc}")
        return 1
    print(f"ok   settings: {len(settings.clusters)} clusters")
    checks = run_checks(settings, args.config)
    for check in checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
