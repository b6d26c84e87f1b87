"""The registry database: engine from typed settings, request.dbsession joined to pyramid_tm."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import zope.sqlalchemy
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from .settings import DatabaseSettings


def make_engine(settings: DatabaseSettings) -> Engine:
    """Build the engine from typed values (engine_from_config would keep 'false' as a truthy string)."""
    url = make_url(settings.url)
    kwargs: dict = {"echo": settings.echo, "future": True}
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
