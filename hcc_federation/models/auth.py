"""Registry tables of authentication: sessions, login attempts and the audit log."""

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from .meta import Base, UtcDateTime, utcnow


class UserSession(Base):
    """A bearer token's server side. Only the token's hash is kept; its secret half never is."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # the public half of the token, for one indexed lookup
    token_id: Mapped[str] = mapped_column(String(32), unique=True)
    # HMAC-SHA256(server secret, token secret): a database copy alone cannot forge a token
    token_hash: Mapped[str] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    client_addr: Mapped[str] = mapped_column(String(45))
    # the person's cluster credentials (password or SSH key), encrypted with a key derived from
    # the token's secret and the server secret: neither a database copy nor the token alone opens it
    credential: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class LoginAttempt(Base):
    """One login attempt (or guess of a current password), counted by every replica for throttling.

    The row is written before the directory is asked, as a failure, and turned into a success if
    the password was right: attempts in flight count at once, and one whose request died counts
    until it ages out of the throttling window.
    """

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_username_at", "username", "attempted_at"),
        Index("ix_login_attempts_addr_at", "client_addr", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # what the client sent, cut to the column: hostile 10 kB names are still counted
    username: Mapped[str] = mapped_column(String(64))
    client_addr: Mapped[str] = mapped_column(String(45))
    attempted_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    success: Mapped[bool] = mapped_column(Boolean)


class AuditEvent(Base):
    """Who did what, when, from where, with what outcome. Never a secret."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_username_at", "username", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    username: Mapped[str] = mapped_column(String(64))
    client_addr: Mapped[str] = mapped_column(String(45))
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(255), default="")


class ThrottleKey(Base):
    """One row per throttled username (``user:<name>``) or address (``addr:<ip>``).

    Every replica locks these rows (in key order) for the short transaction that counts the recent
    failures and reserves the next attempt, so that concurrent attempts are counted one after
    another and never all pass a check made before any of them was recorded.
    """

    __tablename__ = "throttle_keys"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    # lets hcc-cleanup drop keys nobody has tried for a while
    last_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
