"""hcc-cleanup: delete registry rows that can no longer matter (run daily from cron or a timer).

    hcc-cleanup production.ini [--keep-audit-days 365] [--dry-run]

Ended sessions (and the download links that hang on them), old login attempts (and the throttle
keys nobody tried lately) and, if asked, old audit rows. Sessions hold sealed credentials:
removing them once dead keeps less to protect.

Then the live Jupyter notebooks: each is checked on its cluster as its owner, those past their
maximum age are stopped and those whose job or process is gone are marked stopped. That needs the
owner's identity: on a certificate cluster hcc-cleanup signs a short certificate for the owner
with hcc.ssh.ca_key; on a password cluster it holds no password (sessions seal theirs under the
session token, which only the client has), so it skips them and the owner's next read of the
notebook stops it instead. An owner's session ending does not stop a notebook.

Long file operations: rows that ended more than hcc.operations.retention_days ago, and what ended
ones left on clusters that trust the user CA.

Upload leftovers: each upload records its temporary ``.hcc-upload-*`` file while it exists
(files.leftovers); a record older than a day names what a dead link or process left. As its owner
(certificate clusters, like the operations' sweep) the file is removed if untouched for a day;
records it cannot act on are dropped after a week (the owner's next write there still sweeps).

Several hosts may run it at once (a timer on each replica): on MySQL/MariaDB one run at a time
holds a named lock and the others do nothing. --dry-run counts what would be deleted and touches
no cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pyramid.paster import get_appsettings, setup_logging
from sqlalchemy import Engine, delete, func, or_, select, text
from sqlalchemy.orm import Session

from ..auth.sessions import dead_sessions
from ..db import make_engine, session_factory
from ..models import AuditEvent, DownloadLink, FileOperation, LoginAttempt, ThrottleKey, UserSession
from ..models.meta import utcnow
from ..settings import AuthSettings, OperationsSettings, Settings, parse_settings

if TYPE_CHECKING:
    from ..clusters import ClusterAccess

log = logging.getLogger(__name__)


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


def count_expired_notebooks(sessions, now: datetime | None = None) -> int:
    """Live notebooks past their maximum age: what a real run would stop (for --dry-run)."""
    from ..models import Notebook
    from ..notebooks.service import LIVE_STATES

    now = now or utcnow()
    with sessions() as db:
        query = select(func.count()).where(Notebook.state.in_(LIVE_STATES), Notebook.expires_at <= now)
        return db.scalar(query) or 0


def cleanup_notebooks(
    settings, sessions, now: datetime | None = None, access: OwnerAccess | None = None
) -> dict[str, int]:
    """Stop expired notebooks and mark gone ones stopped, as their owners (see the module's doc),
    logged in through ``access`` (``certificate_access``'s; made and closed here when not given)."""
    from ..notebooks import NotebookStore, refresh_live

    close = None
    if access is None:
        access, close = certificate_access(settings)
    try:
        store = NotebookStore(sessions, settings.auth.secret)
        return refresh_live(lambda nb: access(nb.cluster, nb.username), store, now=now)
    finally:
        if close is not None:
            close()


# ----------------------------------------------------------------------- long file operations (issue 15)

# what an operation's row may end as (operations.progress.FINAL_STATES; kept here so that this script
# does not import the feature's package)
ENDED_STATES = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class OperationsCleanup:
    rows: int
    swept: int
    unswept: int


def operations_cutoff(operations: OperationsSettings, now: datetime) -> datetime:
    """Operations that ended before this are forgotten (hcc.operations.retention_days)."""
    return now - timedelta(days=operations.retention_days)


def cleanup_operations(
    db: Session,
    operations: OperationsSettings,
    *,
    now: datetime | None = None,
    sweeper: Callable[[FileOperation], bool] | None = None,
) -> OperationsCleanup:
    """Sweep what ended operations left on their clusters (folders, a cancelled copy's partial target)
    where ``sweeper`` can, then delete the rows that ended more than the retention time ago. A row
    whose leftovers could not be swept is deleted all the same once past retention: the folder is
    small and private, and the user's own next read of any operation never sees it. The caller commits.
    """
    now = now or utcnow()
    swept = unswept = 0
    if sweeper is not None:
        pending = db.scalars(
            select(FileOperation).where(
                FileOperation.state.in_(ENDED_STATES), FileOperation.swept_at.is_(None)
            )
        )
        for row in pending:
            if sweeper(row):
                row.swept_at = now
                swept += 1
            else:
                unswept += 1
    cutoff = operations_cutoff(operations, now)
    rows = db.execute(
        delete(FileOperation).where(FileOperation.state.in_(ENDED_STATES), FileOperation.ended_at < cutoff)
    ).rowcount
    return OperationsCleanup(rows or 0, swept, unswept)


# (cluster name, owner) -> the cluster as that owner, or None where hcc-cleanup cannot log in
OwnerAccess = Callable[[str | None, str], "ClusterAccess | None"]


def certificate_access(settings: Settings) -> tuple[OwnerAccess, Callable[[], None]]:
    """Log in to a cluster as a row's owner with a certificate signed for the purpose (clusters with
    identity = certificate only: no password is kept outside sessions), and a close."""
    from ..clusters import ClusterAccess, ClusterRegistry
    from ..fanout import FanOut
    from ..remote import ConnectionPool, load_ca_key, make_certificate_identity

    pool = ConnectionPool.from_settings(settings)
    fanout = FanOut.for_clusters(settings.clusters)
    registry = ClusterRegistry.from_settings(settings, pool, fanout)
    ca_key = load_ca_key(settings.ssh.ca_key) if settings.ssh.ca_key else None
    names = {cluster.name for cluster in registry}

    def access(cluster_name: str | None, username: str) -> ClusterAccess | None:
        if ca_key is None or cluster_name not in names:
            return None
        cluster = registry.get(cluster_name)
        if cluster.settings.identity != "certificate":
            return None
        identity = make_certificate_identity(ca_key, username, timedelta(minutes=5), "hcc-cleanup")
        return ClusterAccess(pool, cluster, identity)

    def close() -> None:
        pool.close_all()
        fanout.shutdown()

    return access, close


def certificate_sweeper(
    settings: Settings, access: OwnerAccess | None = None
) -> tuple[Callable[[FileOperation], bool], Callable[[], None]]:
    """A sweeper of what ended operations left, logged in as each operation's owner (see
    ``certificate_access``; given ``access``, the close does nothing: its maker closes it)."""
    from ..operations.service import sweep

    close: Callable[[], None] = lambda: None  # noqa: E731
    if access is None:
        access, close = certificate_access(settings)

    def sweeper(row: FileOperation) -> bool:
        source = access(row.cluster, row.username)
        destination = access(row.to_cluster, row.username) if row.to_cluster else None
        if source is None or (row.to_cluster and destination is None):
            return False
        partial = row.to_path if row.state != "done" and row.kind != "delete" else None
        timeout = float(settings.files.tree_timeout)
        return sweep(source, row.id, row.work_dir, timeout, destination=destination, to=partial)

    return sweeper, close


# ------------------------------------------------------------------------ upload leftovers (issue 13)


@dataclass(frozen=True)
class LeftoversCleanup:
    removed: int  # temporary files deleted on their cluster
    gone: int  # rows whose file was already gone (renamed into place or removed)
    alive: int  # files still written to: left, with their rows
    unreachable: int  # rows hcc-cleanup could not act on (kept until LEFTOVER_BOUND)
    dropped: int  # rows past that bound, given up


def cleanup_upload_leftovers(
    db: Session, *, access: OwnerAccess | None, now: datetime | None = None
) -> LeftoversCleanup:
    """Remove the ``.hcc-upload-*`` files that rows older than a day name, as their owners, and the
    rows with them; rows that cannot be acted on go once older than ``LEFTOVER_BOUND``.

    ``access`` None (a dry run) touches no cluster: rows older than a day count as unreachable and
    those past the bound as dropped. A cluster that fails once is not tried again in this run (each
    try could cost a connect timeout). The caller commits (or rolls back, for a dry run).
    """
    from ..files.errors import PathError
    from ..files.leftovers import ALIVE, LEFTOVER_AGE, LEFTOVER_BOUND, REMOVED, remove_leftover
    from ..models import UploadTemp

    now = now or utcnow()
    counts = dict.fromkeys(("removed", "gone", "alive", "unreachable", "dropped"), 0)
    failed_clusters: set[str] = set()
    due = db.scalars(
        select(UploadTemp).where(UploadTemp.started_at < now - LEFTOVER_AGE).order_by(UploadTemp.started_at)
    ).all()
    for row in due:
        found = None
        owner = access(row.cluster, row.username) if access and row.cluster not in failed_clusters else None
        if owner is not None:
            try:
                with owner.sftp() as sftp:
                    found = remove_leftover(sftp, row.path, now - LEFTOVER_AGE)
            except PathError:
                pass  # this file's answer (say, its directory is no longer the owner's): this row only
            except Exception:  # noqa: BLE001 - the link or the login: not again for this cluster
                log.warning("hcc-cleanup: no upload leftovers removed on %s", row.cluster, exc_info=True)
                failed_clusters.add(row.cluster)
        if found == ALIVE:
            counts["alive"] += 1
        elif found is not None:
            # removed, or nothing of ours there any more: the row has done its work
            counts["removed" if found == REMOVED else "gone"] += 1
            db.delete(row)
        elif row.started_at < now - LEFTOVER_BOUND:
            counts["dropped"] += 1
            db.delete(row)
        else:
            counts["unreachable"] += 1
    return LeftoversCleanup(**counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hcc-cleanup", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the service's ini file, e.g. production.ini")
    parser.add_argument("--keep-audit-days", type=int, default=None, help="also delete older audit rows")
    parser.add_argument(
        "--no-sweep",
        action="store_true",
        help="do not log in to clusters to remove what ended operations left there",
    )
    parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    args = parser.parse_args(argv)
    setup_logging(args.config)
    settings = parse_settings(get_appsettings(args.config))
    engine = make_engine(settings.database)
    # one pool logs in as owners for both sweeps (operations' leftovers and uploads')
    access, close = (None, None) if args.no_sweep or args.dry_run else certificate_access(settings)
    sweeper = certificate_sweeper(settings, access)[0] if access is not None else None
    try:
        with exclusive_run(engine) as mine:
            if not mine:
                print("hcc-cleanup: another run holds the lock; nothing done")
                return 0
            with session_factory(engine)() as db:
                report = cleanup(db, settings.auth, keep_audit_days=args.keep_audit_days)
                # a dry run makes the same deletes, counted exactly, then undoes them
                db.rollback() if args.dry_run else db.commit()
            if args.dry_run:
                # nothing is stopped or swept on a cluster: only the rows that would go are counted
                notebooks = {"expired": count_expired_notebooks(session_factory(engine)), "ended": 0}
                notebooks.update(skipped=0, failed=0)
                with session_factory(engine)() as db:
                    operations = cleanup_operations(db, settings.operations)
                    leftovers = cleanup_upload_leftovers(db, access=None)
                    db.rollback()
            else:
                notebooks = cleanup_notebooks(settings, session_factory(engine), access=access)
                with session_factory(engine)() as db, db.begin():
                    operations = cleanup_operations(db, settings.operations, sweeper=sweeper)
                with session_factory(engine)() as db, db.begin():
                    leftovers = cleanup_upload_leftovers(db, access=access)
    finally:
        if close is not None:
            close()
        engine.dispose()
    print(
        f"hcc-cleanup: {report.sessions} sessions, {report.links} links, "
        f"{report.login_attempts} login attempts ({report.throttle_keys} throttle keys), "
        f"{report.audit_events} audit rows {'would be deleted (dry run)' if args.dry_run else 'deleted'}; "
        f"notebooks: {notebooks['expired']} expired {'to stop' if args.dry_run else 'stopped'}, "
        f"{notebooks['ended']} ended, {notebooks['skipped']} skipped (password clusters), "
        f"{notebooks['failed']} could not be checked"
    )
    print(
        f"hcc-cleanup: {operations.rows} operations {'to delete' if args.dry_run else 'deleted'}, "
        f"leftovers of {operations.swept} swept ({operations.unswept} on clusters it cannot log in to)"
    )
    if args.dry_run:
        print(
            f"hcc-cleanup: upload leftovers: {leftovers.unreachable + leftovers.dropped} older than a day "
            f"to look at, {leftovers.dropped} records past the bound to drop (dry run)"
        )
    else:
        print(
            f"hcc-cleanup: upload leftovers: {leftovers.removed} removed, {leftovers.gone} already gone, "
            f"{leftovers.alive} still being written, {leftovers.unreachable} kept (cannot log in), "
            f"{leftovers.dropped} records dropped"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
