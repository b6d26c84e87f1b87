"""A session's life has one rule: the requests' check and hcc-cleanup's SQL agree on every case."""

from datetime import datetime, timedelta

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from hcc_federation.auth.sessions import dead_sessions, session_is_live
from hcc_federation.models import UserSession
from hcc_federation.models.meta import Base

IDLE = 600
NOW = datetime(2026, 12, 1, 12, 0, 0)


def test_the_python_rule_and_the_sql_rule_agree():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine, tables=[UserSession.__table__])
    offsets = (-IDLE - 1, -IDLE, -IDLE + 1, -1, 0, 1, IDLE)
    with Session(engine) as db:
        rows = []
        for i, (seen, ends, revoked) in enumerate(
            (seen, ends, revoked) for seen in offsets for ends in offsets for revoked in (False, True)
        ):
            rows.append(
                UserSession(
                    token_id=f"t{i}",
                    token_hash="h",
                    username="alice",
                    client_addr="127.0.0.1",
                    created_at=NOW - timedelta(days=1),
                    last_seen_at=NOW + timedelta(seconds=seen),
                    expires_at=NOW + timedelta(seconds=ends),
                    revoked_at=NOW if revoked else None,
                )
            )
        db.add_all(rows)
        db.flush()
        dead_in_sql = set(db.scalars(select(UserSession.id).where(dead_sessions(NOW, IDLE))))
        dead_in_python = {row.id for row in rows if not session_is_live(row, NOW, IDLE)}
    assert dead_in_sql == dead_in_python
    # both kinds occur, and each limit alone ends a session
    assert 0 < len(dead_in_python) < len(rows)
    fresh = UserSession(last_seen_at=NOW, expires_at=NOW + timedelta(hours=1), revoked_at=None)
    assert session_is_live(fresh, NOW, IDLE)
    assert not session_is_live(fresh, NOW + timedelta(seconds=IDLE), IDLE)
    assert not session_is_live(fresh, NOW + timedelta(hours=1), IDLE * 10)
