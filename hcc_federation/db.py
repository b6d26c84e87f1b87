"""The registry database: engine from typed settings, request.dbsession joined to pyramid_tm."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import zope.sqlalchemy
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from .settings import DatabaseSettings

log = logging.getLogger(__name__)


def make_engine(settings: DatabaseSettings) -> Engine:
    """Build the engine from typed values (engine_from_config would keep 'false' as a truthy string)."""
    url = make_url(settings.url)
    kwargs: dict = {"echo": settings.echo, "future": True}
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        private_sqlite_file(Path(url.database))
    if url.get_backend_name() == "sqlite":
        # SQLite serialises writers; a short wait beats "database is locked" under waitress threads
        kwargs["connect_args"] = {"timeout": 15}
    else:
        # replicas sit behind load balancers that cut idle connections: check before use
        kwargs.update(pool_pre_ping=True, pool_recycle=3600, pool_size=settings.pool_size, max_overflow=10)
        if url.get_backend_name() == "mysql" and "charset" not in url.query:
            url = url.update_query_dict({"charset": "utf8mb4"})
    engine = create_engine(url, **kwargs)
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
    config.registry.hcc_dbsession_factory = session_factory(engine)
    config.add_request_method(_dbsession, "dbsession", reify=True)
