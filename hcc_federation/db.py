"""The registry database: engine from typed settings, request.dbsession joined to pyramid_tm."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import zope.sqlalchemy
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from .settings import DatabaseSettings

log = logging.getLogger(__name__)

# MySQL client error codes (2000-2999) are failures of the link to the server: 2003 refused,
# 2006 gone away, 2013 lost (which is also what a read_timeout gives). 2000 is what the guard raises.
_CLIENT_ERRORS = range(2000, 3000)
_GUARD_ERROR = 2000


class DatabaseGuard:
    """A bulkhead and a circuit breaker in front of every round trip to the database.

    The bulkhead: at most ``max_concurrent`` threads wait on the database at once; another waits up
    to ``queue_timeout`` for its turn, then fails. A request holds its pooled connection from the
    token lookup to the commit, so capping connections would cap requests (a slow SSH call would
    hold one); what is capped here is the time spent *waiting on the database*, which is what a
    blackholed database turns into minutes. The breaker: once a call failed for want of an answer,
    every call fails at once for ``cooldown`` seconds, so that a dead database costs each request
    nothing rather than a timeout; after that, calls go through again and heal or trip it again.

    What trips it: a failed connect, or a call that failed after waiting ``slow_after`` seconds (a
    read or write timeout). A pooled connection that a restart or a load balancer cut fails its ping
    at once, and SQLAlchemy connects anew: that is no outage, and must not turn into 503s.

    ``unavailable(message)`` makes the exception raised (the DBAPI's OperationalError, so that
    SQLAlchemy wraps it like any database failure); ``is_link_failure(exc)`` tells which failures
    are the link's (not, say, a deadlock).
    """

    def __init__(
        self,
        max_concurrent: int,
        queue_timeout: float,
        cooldown: float,
        unavailable: Callable[[str], Exception],
        is_link_failure: Callable[[BaseException], bool],
        slow_after: float = 0.0,
    ):
        self.max_concurrent = max_concurrent
        self.slow_after = slow_after
        self.queue_timeout = queue_timeout
        self.cooldown = cooldown
        self._unavailable = unavailable
        self._is_link_failure = is_link_failure
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._open_until = 0.0
        self._local = threading.local()
        self._lock = threading.Lock()
        self.counters = {"calls": 0, "busy": 0, "open": 0, "trips": 0}
        # calls waiting on the database right now
        self.in_flight = 0

    def is_open(self) -> bool:
        return time.monotonic() < self._open_until

    def trip(self) -> None:
        with self._lock:
            self._open_until = time.monotonic() + self.cooldown
            self.counters["trips"] += 1

    @contextmanager
    def call(self, *, connect: bool = False, queue: bool = True) -> Iterator[None]:
        """One round trip (``connect``: opening a connection): refused at once while the breaker is
        open or when the queue is too long.

        ``queue=False`` admits the call past the bulkhead: for a connection inside a transaction,
        which may hold row locks that the queued calls are waiting for. Queueing it behind them
        is a priority inversion: ten concurrent logins of one name (each locks the name's
        throttle row) filled the four slots with lock waiters, and the holder's next statement
        then waited out the queue timeout (503s for a burst the database could take).
        """
        if getattr(self._local, "inside", False):
            # connecting runs queries of its own: they are part of the call already admitted
            yield
            return
        if self.is_open():
            with self._lock:
                self.counters["open"] += 1
            raise self._unavailable(
                f"the database did not answer lately; not trying again for up to {self.cooldown:g} s"
            )
        if queue and not self._slots.acquire(timeout=self.queue_timeout):
            with self._lock:
                self.counters["busy"] += 1
            raise self._unavailable(
                f"{self.max_concurrent} calls were waiting on the database for {self.queue_timeout:g} s"
            )
        self._local.inside = True
        with self._lock:
            self.counters["calls"] += 1
            self.in_flight += 1
        started = time.monotonic()
        try:
            yield
        except BaseException as exc:
            waited = time.monotonic() - started
            if self._is_link_failure(exc) and (connect or waited >= self.slow_after):
                log.warning("the database failed to answer (%s); failing fast for %g s", exc, self.cooldown)
                self.trip()
            raise
        finally:
            self._local.inside = False
            with self._lock:
                self.in_flight -= 1
            if queue:
                self._slots.release()


def _mysql_guard(settings: DatabaseSettings) -> DatabaseGuard:
    import MySQLdb

    def unavailable(message: str) -> Exception:
        return MySQLdb.OperationalError(_GUARD_ERROR, message)

    def is_link_failure(exc: BaseException) -> bool:
        code = exc.args[0] if isinstance(exc, MySQLdb.OperationalError) and exc.args else None
        return isinstance(code, int) and code in _CLIENT_ERRORS and code != _GUARD_ERROR

    return DatabaseGuard(
        settings.max_concurrent_calls,
        settings.call_queue_timeout,
        settings.failure_cooldown,
        unavailable,
        is_link_failure,
        # a call that failed after most of its timeout was waiting on a silent server
        slow_after=0.9 * min(settings.read_timeout, settings.write_timeout),
    )


def _guarded_mysql_connection(guard: DatabaseGuard) -> type:
    """mysqlclient's Connection with every blocking round trip inside ``guard.call()``.

    mysqlclient sends every statement through ``query`` (cursors call it), and SQLAlchemy's
    pre-ping, commit and rollback are the other round trips; connecting is one too.
    """
    from MySQLdb.connections import Connection

    class GuardedConnection(Connection):
        # whether a statement ran since the last commit or rollback: the transaction may hold
        # row locks, so its further calls do not queue behind calls that may wait for them
        _hcc_in_transaction = False

        def __init__(self, *args, **kwargs):
            with guard.call(connect=True):
                super().__init__(*args, **kwargs)

        def query(self, query):
            with guard.call(queue=not self._hcc_in_transaction):
                self._hcc_in_transaction = True
                return super().query(query)

        def ping(self, *args):
            with guard.call(queue=not self._hcc_in_transaction):
                return super().ping(*args)

        def commit(self):
            try:
                with guard.call(queue=not self._hcc_in_transaction):
                    return super().commit()
            finally:
                self._hcc_in_transaction = False

        def rollback(self):
            try:
                with guard.call(queue=not self._hcc_in_transaction):
                    return super().rollback()
            finally:
                self._hcc_in_transaction = False

    return GuardedConnection


def make_engine(settings: DatabaseSettings) -> Engine:
    """Build the engine from typed values (engine_from_config would keep 'false' as a truthy string)."""
    url = make_url(settings.url)
    kwargs: dict = {"echo": settings.echo, "future": True}
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        private_sqlite_file(Path(url.database))
    guard = None
    if url.get_backend_name() == "sqlite":
        # SQLite serialises writers; a short wait beats "database is locked" under waitress threads
        kwargs["connect_args"] = {"timeout": 15}
    else:
        # replicas sit behind load balancers that cut idle connections: check before use
        kwargs.update(
            pool_pre_ping=True,
            pool_recycle=3600,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout,
        )
        if url.get_backend_name() == "mysql":
            if "charset" not in url.query:
                url = url.update_query_dict({"charset": "utf8mb4"})
            # Without these mysqlclient waits on a silent server until TCP gives up (~140 s seen).
            # MariaDB Connector/C (what Debian's mysqlclient links) does not retry a read that timed
            # out, unlike MySQL's libmysqlclient (3x): read_timeout=2 failed after 2.0 s here, and
            # connect_timeout bounds the wait for the server's greeting as well (2.0 s, blackholed).
            kwargs["connect_args"] = {
                "connect_timeout": settings.connect_timeout,
                "read_timeout": settings.read_timeout,
                "write_timeout": settings.write_timeout,
            }
            if url.get_driver_name() == "mysqldb":
                guard = _mysql_guard(settings)
    engine = create_engine(url, **kwargs)
    engine.hcc_guard = guard  # type: ignore[attr-defined]
    if guard is not None:
        connection_class = _guarded_mysql_connection(guard)

        @event.listens_for(engine, "do_connect")
        def _connect_guarded(dialect, conn_rec, cargs, cparams):
            return connection_class(*cargs, **cparams)

    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def private_sqlite_file(path: Path) -> None:
    """Make sure the SQLite registry exists readable by the service's user alone, before SQLite opens it.

    It holds token hashes and sealed credentials. SQLite creates a missing file with the umask
    (0644 under the usual 022) and gives its -wal and -shm files the main file's mode (seen here:
    a 0600 registry gets 0600 -wal and -shm, a 0644 one 0644), so the main file decides for all three.
    """
    if not path.exists():
        # a directory made for it is the service's alone; an existing one is left as the admin made it
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # another process may make it first: then it is checked below like any other
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    # Made by an older version with the umask, or by hand. The group's access may be an admin's
    # choice (a backup group); the others' never was: take it away, and say so. -wal and -shm left
    # by a running or crashed service keep their old mode until SQLite deletes them: them too.
    for one in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        try:
            mode = stat.S_IMODE(one.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o007:
            one.chmod(mode & ~0o007)
            log.warning("%s was open to other users (mode %o); now %o", one, mode, mode & ~0o007)
    if stat.S_IMODE(path.parent.stat().st_mode) & 0o002 and not path.parent.stat().st_mode & stat.S_ISVTX:
        # anyone could replace the registry or plant a -wal file beside it
        log.warning("the directory of the SQLite registry %s is writable by every user", path)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers go on while one request writes
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def independent_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session committed on its own, outside the request's transaction.

    Login attempts and audit rows must survive a request that ends in an error (a 401 aborts the
    request's transaction), so they are written and committed here, at once.
    """
    session = factory()
    try:
        yield session
        session.commit()
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


def _dbsession(request) -> Session:
    session = request.registry.hcc_dbsession_factory()
    zope.sqlalchemy.register(session, transaction_manager=request.tm)
    return session


def includeme(config) -> None:
    settings = config.registry.hcc_settings
    config.add_settings({"tm.manager_hook": "pyramid_tm.explicit_manager", "tm.annotate_user": False})
    config.include("pyramid_tm")
    engine = make_engine(settings.database)
    config.registry.hcc_engine = engine
    # None for SQLite, which has no link to lose
    config.registry.hcc_db_guard = engine.hcc_guard
    config.registry.hcc_dbsession_factory = session_factory(engine)
    config.add_request_method(_dbsession, "dbsession", reify=True)
