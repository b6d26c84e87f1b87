"""The SQLite registry holds token hashes and sealed credentials: nobody else may read its files."""

import logging
import os
import stat

from sqlalchemy import text

from hcc_federation.db import make_engine
from hcc_federation.settings import DatabaseSettings


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _write_something(url: str, wal_mode: int) -> None:
    engine = make_engine(DatabaseSettings(url=url))
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        # checked while the connection is open: SQLite removes -wal and -shm when the last one closes
        with engine.connect() as conn:
            conn.execute(text("SELECT x FROM t")).all()
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            wal_files = [p for p in (url_path(url) + "-wal", url_path(url) + "-shm") if os.path.exists(p)]
            assert wal_files, "no WAL files to check"
            for path in wal_files:
                assert _mode(path) == wal_mode, path
    finally:
        engine.dispose()


def url_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def test_a_new_sqlite_registry_and_its_wal_are_private(tmp_path):
    old = os.umask(0o022)  # the usual umask, which gave 0644 files
    try:
        path = tmp_path / "var" / "registry.sqlite"
        _write_something(f"sqlite:///{path}", 0o600)
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    # the directory made for it is not open to others either
    assert _mode(path.parent) & 0o007 == 0


def test_an_existing_world_readable_registry_is_closed_to_others_with_a_warning(tmp_path, caplog):
    path = tmp_path / "registry.sqlite"
    path.touch()
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="hcc_federation.db"):
        _write_something(f"sqlite:///{path}", 0o640)
    # the group's access may be an admin's choice; the others' never was
    assert _mode(path) == 0o640
    assert any("registry.sqlite" in r.getMessage() for r in caplog.records)
