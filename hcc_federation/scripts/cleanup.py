"""hcc-cleanup: delete registry rows that can no longer matter (run daily from cron or a timer).

    hcc-cleanup production.ini [--keep-audit-days 365] [--dry-run]

Ended sessions (and the download links that hang on them), old login attempts (and the throttle
keys nobody tried lately) and, if asked, old audit rows. Sessions hold sealed credentials:
removing them once dead keeps less to protect. Several hosts may run it at once (a timer on each
replica): on MySQL/MariaDB one run at a time holds a named lock and the others do nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from pyramid.paster import get_appsettings, setup_logging
from sqlalchemy import Engine, delete, or_, select, text
from sqlalchemy.orm import Session

from ..auth.sessions import dead_sessions
from ..db import make_engine, session_factory
from ..models import AuditEvent, DownloadLink, LoginAttempt, ThrottleKey, UserSession
from ..models.meta import utcnow
from ..settings import AuthSettings, parse_settings


@dataclass(frozen=True)
class CleanupReport:
    sessions: int
    links: int
    login_attempts: int
    audit_events: int
    throttle_keys: int = 0


def cleanup(
    db: Session, auth: AuthSettings, *, now: datetime | None = None, keep_audit_days: int | None = None
):
    """Delete dead rows; return how many of each kind. The caller commits."""
    now = now or utcnow()
    dead = select(UserSession.id).where(dead_sessions(now, auth.idle_timeout))
    dead_ids = [row[0] for row in db.execute(dead)]
    links = db.execute(
        delete(DownloadLink).where(or_(DownloadLink.expires_at <= now, DownloadLink.session_id.in_(dead_ids)))
    ).rowcount
    sessions = db.execute(delete(UserSession).where(UserSession.id.in_(dead_ids))).rowcount if dead_ids else 0
    # throttling looks back one window; a day more keeps recent history for whoever investigates
    attempts_cutoff = now - timedelta(seconds=auth.throttle_window) - timedelta(days=1)
    attempts = db.execute(delete(LoginAttempt).where(LoginAttempt.attempted_at < attempts_cutoff)).rowcount
    # the rows that attempts lock: one per name or address ever tried, hostile ones included
    keys = db.execute(delete(ThrottleKey).where(ThrottleKey.last_attempt_at < attempts_cutoff)).rowcount
    audit = 0
    if keep_audit_days is not None:
        audit = db.execute(
            delete(AuditEvent).where(AuditEvent.at < now - timedelta(days=keep_audit_days))
        ).rowcount
    return CleanupReport(sessions or 0, links or 0, attempts or 0, audit or 0, keys or 0)


# MySQL/MariaDB named lock: server-wide, held by one connection, gone with it if the run dies
CLEANUP_LOCK = "hcc-cleanup"


@contextlib.contextmanager
def exclusive_run(engine: Engine) -> Iterator[bool]:
    """Whether this run may clean: False while another host's run holds the lock.

    Two runs deleting the same rows in different orders could deadlock each other; one at a time is
    enough. The lock lives on a connection of its own for the whole run and goes with it if the run
    dies. SQLite has one writer at a time anyway.
    """
    if engine.dialect.name != "mysql":
        yield True
        return
    with engine.connect() as conn:
        held = conn.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": CLEANUP_LOCK}).scalar() == 1
        try:
            yield held
        finally:
            if held:
                conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": CLEANUP_LOCK})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hcc-cleanup", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the service's ini file, e.g. production.ini")
    parser.add_argument("--keep-audit-days", type=int, default=None, help="also delete older audit rows")
    parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    args = parser.parse_args(argv)
    setup_logging(args.config)
    settings = parse_settings(get_appsettings(args.config))
    engine = make_engine(settings.database)
    try:
        with exclusive_run(engine) as mine:
            if not mine:
                print("hcc-cleanup: another run holds the lock; nothing done")
                return 0
            with session_factory(engine)() as db:
                report = cleanup(db, settings.auth, keep_audit_days=args.keep_audit_days)
                # a dry run makes the same deletes, counted exactly, then undoes them
                db.rollback() if args.dry_run else db.commit()
    finally:
        engine.dispose()
    print(
        f"hcc-cleanup: {report.sessions} sessions, {report.links} links, "
        f"{report.login_attempts} login attempts ({report.throttle_keys} throttle keys), "
        f"{report.audit_events} audit rows {'would be deleted (dry run)' if args.dry_run else 'deleted'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
