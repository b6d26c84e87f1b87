"""Sessions behind bearer tokens, and login throttling shared by every replica through the database."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..db import independent_session
from ..errors import DomainError
from ..models import AuditEvent, LoginAttempt, ThrottleKey, UserSession
from ..models.meta import utcnow
from ..settings import AuthSettings, Settings
from .crypto import Token, new_token, open_credential, parse_token, seal_credential, token_hash, token_matches

# last_seen_at is written at most this often: a write per request would make every GET a
# database write. SessionStore.touch_interval shortens it for short idle timeouts.
MAX_TOUCH_INTERVAL = timedelta(seconds=60)


# --------------------------------------------------------------------------------------------
# The one rule of a session's life, in Python (requests, download links) and in SQL (hcc-cleanup):
# not revoked, younger than hcc.auth.max_age (expires_at) and used within hcc.auth.idle_timeout.
# --------------------------------------------------------------------------------------------


def session_ends_at(row: UserSession, idle_timeout: float) -> datetime:
    """When the session ends if nothing more happens: the idle limit or the maximum age."""
    return min(row.expires_at, row.last_seen_at + timedelta(seconds=idle_timeout))


def session_is_live(row: UserSession, now: datetime, idle_timeout: float) -> bool:
    return row.revoked_at is None and now < session_ends_at(row, idle_timeout)


def dead_sessions(now: datetime, idle_timeout: float) -> ColumnElement[bool]:
    """``not session_is_live`` as a WHERE clause on the sessions table."""
    return or_(
        UserSession.revoked_at.is_not(None),
        UserSession.expires_at <= now,
        UserSession.last_seen_at <= now - timedelta(seconds=idle_timeout),
    )


@dataclass(frozen=True)
class ActiveSession:
    """A session that a presented token opened: who, which row, and the token to open credentials."""

    row: UserSession
    token: Token
    username: str
    expires_at: datetime


class VerifiedTokens:
    """Tokens this process verified against the database in the last ``ttl`` seconds.

    The lookup is a quarter of a warm file listing's Python time; a portal calls several times a
    second with one token. A hit is trusted for ``ttl`` seconds after its database check (and never
    past the session's own end), so a revocation made on another replica (a logout, a password
    change, hcc-cleanup) takes effect here within ``ttl``; one made on this replica evicts at once.
    Bounded (``MAX`` tokens, least recently verified dropped first). ``ttl`` 0 turns it off.
    """

    MAX = 10000

    def __init__(self, ttl: float, clock: Callable[[], float] | None = None) -> None:
        self.ttl = ttl
        # the sessions' own clock (utcnow), so that the idle and age rules and this bound agree
        self._clock = clock or (lambda: utcnow().timestamp())
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, ActiveSession]] = OrderedDict()
        # revocations made here in the last ttl: a request that read the row just before one
        # must not put the token back afterwards
        self._revoked: dict[int | str, float] = {}

    def get(self, token_text: str, now: datetime) -> ActiveSession | None:
        if self.ttl <= 0:
            return None
        with self._lock:
            found = self._entries.get(token_text)
            if found is None:
                return None
            verified_at, session = found
            # a clock set back counts as expired: never trusted for longer than ttl
            if 0 <= self._clock() - verified_at < self.ttl and now < session.expires_at:
                return session
            del self._entries[token_text]
            return None

    def put(self, token_text: str, session: ActiveSession) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            now = self._clock()
            for key in [k for k, at in self._revoked.items() if now - at >= self.ttl]:
                del self._revoked[key]
            if session.row.id in self._revoked or session.username in self._revoked:
                return
            self._entries[token_text] = (self._clock(), session)
            self._entries.move_to_end(token_text)
            while len(self._entries) > self.MAX:
                self._entries.popitem(last=False)

    def forget(self, *, session_id: int | None = None, username: str | None = None) -> None:
        """Drop the tokens of one session or of every session of a user (revoked here)."""
        with self._lock:
            for key in (session_id, username):
                if key is not None:
                    self._revoked[key] = self._clock()
            for key, (_, session) in list(self._entries.items()):
                if session.row.id == session_id or session.username == username:
                    del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _detached_copy(row: UserSession) -> UserSession:
    """A copy of the row bound to no database session, safe to share between requests and threads
    (the request's own row is expired by its session's rollback)."""
    copy = UserSession()
    for attribute in UserSession.__mapper__.column_attrs:
        setattr(copy, attribute.key, getattr(row, attribute.key))
    return copy


class SessionStore:
    def __init__(self, settings: AuthSettings):
        self.settings = settings
        self.verified = VerifiedTokens(settings.token_cache)
        # A session used every T seconds is touched at most touch_interval late, so it looks idle
        # only when T > idle_timeout - touch_interval. With a quarter of the idle timeout, use
        # more often than every 3/4 of it keeps a session alive; a fixed 60 s let a 60 s idle
        # timeout end a session used every 28 s after 84 s.
        self.touch_interval = min(MAX_TOUCH_INTERVAL, timedelta(seconds=settings.idle_timeout) / 4)

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionStore:
        return cls(settings.auth)

    def effective_expiry(self, row: UserSession) -> datetime:
        """When the session ends if nothing more happens: the idle limit or the maximum age."""
        return session_ends_at(row, self.settings.idle_timeout)

    def is_live(self, row: UserSession, now: datetime) -> bool:
        return session_is_live(row, now, self.settings.idle_timeout)

    def create(self, db: Session, username: str, client_addr: str, credential: dict | None) -> ActiveSession:
        token = new_token()
        now = utcnow()
        row = UserSession(
            token_id=token.token_id,
            token_hash=token_hash(self.settings.secret, token),
            username=username,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=self.settings.max_age),
            client_addr=client_addr[:45],
            credential=seal_credential(self.settings.secret, token, credential) if credential else None,
        )
        db.add(row)
        db.flush()
        return ActiveSession(row, token, username, self.effective_expiry(row))

    def cached(self, token_text: str) -> ActiveSession | None:
        """The session of a token verified in this process within hcc.auth.token_cache, or None."""
        return self.verified.get(token_text, utcnow())

    def lookup(
        self, db: Session, token_text: str, *, touch: Callable[[int, datetime], None] | None = None
    ) -> ActiveSession | None:
        """The live session of a token, or None (garbled, unknown, revoked, idle or too old).

        At most once a ``touch_interval``, ``touch(session_id, now)`` records the use. The caller
        commits that on its own: an UPDATE in the request's transaction would hold the session's
        row lock across the request's SSH calls, and a second request of the same session that
        wanted to touch it too would wait for them.
        """
        cached = self.cached(token_text)
        if cached is not None:
            return cached
        token = parse_token(token_text)
        if token is None:
            return None
        row = db.execute(
            select(UserSession).where(UserSession.token_id == token.token_id)
        ).scalar_one_or_none()
        now = utcnow()
        if (
            row is None
            or not token_matches(self.settings.secret, token, row.token_hash)
            or not self.is_live(row, now)
        ):
            return None
        expires_at = self.effective_expiry(row)
        if now - row.last_seen_at >= self.touch_interval and touch is not None:
            touch(row.id, now)
            expires_at = min(row.expires_at, now + timedelta(seconds=self.settings.idle_timeout))
        session = ActiveSession(_detached_copy(row), token, row.username, expires_at)
        self.verified.put(token_text, session)
        return session

    def touch(self, db: Session, session_id: int, now: datetime) -> None:
        db.execute(update(UserSession).where(UserSession.id == session_id).values(last_seen_at=now))

    def credential(self, session: ActiveSession) -> dict | None:
        if session.row.credential is None:
            return None
        return open_credential(self.settings.secret, session.token, session.row.credential)

    def revoke(self, db: Session, session: ActiveSession) -> None:
        self.verified.forget(session_id=session.row.id)
        # the sealed credential is of no further use: drop it rather than keep it around
        db.execute(
            update(UserSession)
            .where(UserSession.id == session.row.id)
            .values(revoked_at=utcnow(), credential=None)
        )

    def revoke_all(self, db: Session, username: str) -> int:
        self.verified.forget(username=username)
        result = db.execute(
            update(UserSession)
            .where(UserSession.username == username, UserSession.revoked_at.is_(None))
            .values(revoked_at=utcnow(), credential=None)
        )
        return result.rowcount or 0


class TooManyAttempts(DomainError):
    """Too many recent failed attempts for a username or from an address; ``retry_after`` says when."""

    field = "username"

    def __init__(self, retry_after: int, *, field: str | None = None):
        super().__init__(f"too many failed logins; try again in {retry_after} s", field=field)
        self.retry_after = retry_after


# MySQL/MariaDB ER_LOCK_DEADLOCK: InnoDB may pick one of two upserts of the same new key as a
# victim; the transaction is short and holds nothing else, so it is simply run again
_DEADLOCK = 1213
_RESERVE_TRIES = 3


class LoginThrottle:
    """Refuse attempts after too many recent failures for a username or from an address.

    An attempt is reserved in the database before the directory is asked, in one short
    transaction of its own that locks the username's and the address's ``throttle_keys`` rows,
    counts the recent failures and, under the limit, adds the attempt as a failure. The locks
    make concurrent attempts (on any replica) count one after another: the limit holds. They are
    never held across LDAP. A right password then turns the attempt into a success.
    """

    def __init__(self, settings: AuthSettings):
        self.settings = settings

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginThrottle:
        return cls(settings.auth)

    def reserve(
        self,
        factory: sessionmaker[Session],
        username: str,
        client_addr: str,
        *,
        event: str = "login",
        name: str | None = None,
    ) -> int:
        """Reserve one attempt and return its id; raise TooManyAttempts (audited as ``event``)."""
        for tries in range(1, _RESERVE_TRIES + 1):
            try:
                with independent_session(factory) as db:
                    attempt_id, wait = self._reserve(db, username, client_addr)
                    if wait is not None:
                        audit(db, event, username, client_addr, "throttled")
                break
            except OperationalError as exc:
                code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
                if code != _DEADLOCK or tries == _RESERVE_TRIES:
                    raise
        if wait is not None:
            raise TooManyAttempts(wait, field=name)
        return attempt_id

    def _reserve(self, db: Session, username: str, client_addr: str) -> tuple[int, None] | tuple[None, int]:
        username, client_addr = username[:64], client_addr[:45]
        # In key order, so that two attempts never wait for each other's second key. The first
        # statement is a write: on SQLite it takes the database's write lock before anything is
        # read (what BEGIN IMMEDIATE would do), on MariaDB the row lock until the commit.
        for key in sorted((f"user:{username}", f"addr:{client_addr}")):
            db.execute(_lock_key(db, key, utcnow()))
        # On MariaDB (REPEATABLE READ) the snapshot these counts read is taken by the first SELECT,
        # after the locks are held: it sees the attempts of whoever held them before.
        now = utcnow()
        wait = self._retry_after(db, username, client_addr, now)
        if wait is not None:
            return None, wait
        attempt = LoginAttempt(username=username, client_addr=client_addr, attempted_at=now, success=False)
        db.add(attempt)
        db.flush()
        return attempt.id, None

    def _retry_after(self, db: Session, username: str, client_addr: str, now: datetime) -> int | None:
        """Seconds to wait before the next attempt, or None when an attempt may go ahead."""
        s = self.settings
        window_start = now - timedelta(seconds=s.throttle_window)
        # a successful login forgives the failures before it, for that username
        last_success = db.execute(
            select(func.max(LoginAttempt.attempted_at)).where(
                LoginAttempt.username == username, LoginAttempt.success.is_(True)
            )
        ).scalar()
        user_since = max(window_start, last_success) if last_success else window_start
        waits = []
        for column, value, since, limit in (
            (LoginAttempt.username, username, user_since, s.throttle_max_per_user),
            (LoginAttempt.client_addr, client_addr, window_start, s.throttle_max_per_address),
        ):
            count, oldest = db.execute(
                select(func.count(), func.min(LoginAttempt.attempted_at)).where(
                    column == value, LoginAttempt.success.is_(False), LoginAttempt.attempted_at > since
                )
            ).one()
            if count >= limit and oldest is not None:
                waits.append(int((oldest + timedelta(seconds=s.throttle_window) - now).total_seconds()) + 1)
        return max(waits) if waits else None

    def succeeded(self, db: Session, attempt_id: int) -> None:
        """The password was right: the reserved attempt stops counting as a failure."""
        db.execute(update(LoginAttempt).where(LoginAttempt.id == attempt_id).values(success=True))

    def succeeded_now(self, factory: sessionmaker[Session], attempt_id: int) -> None:
        """``succeeded``, committed on its own: for a request that ends in an error all the same."""
        with independent_session(factory) as db:
            self.succeeded(db, attempt_id)

    def cancel(self, factory: sessionmaker[Session], attempt_id: int) -> None:
        """The directory could not tell (it is down): the attempt proved nothing and does not count."""
        with independent_session(factory) as db:
            db.execute(delete(LoginAttempt).where(LoginAttempt.id == attempt_id))


def _lock_key(db: Session, key: str, now: datetime):
    """An upsert of one throttle_keys row, which leaves the row locked by this transaction."""
    dialect = db.get_bind().dialect.name
    values = {"key": key, "last_attempt_at": now}
    if dialect in ("mysql", "mariadb"):
        return mysql_insert(ThrottleKey).values(values).on_duplicate_key_update(last_attempt_at=now)
    if dialect == "sqlite":
        return (
            sqlite_insert(ThrottleKey)
            .values(values)
            .on_conflict_do_update(index_elements=["key"], set_={"last_attempt_at": now})
        )
    if dialect == "postgresql":
        return (
            postgresql_insert(ThrottleKey)
            .values(values)
            .on_conflict_do_update(index_elements=["key"], set_={"last_attempt_at": now})
        )
    raise NotImplementedError(f"login throttling has no row lock for the {dialect} database")


def audit(db: Session, event: str, username: str, client_addr: str, outcome: str, detail: str = "") -> None:
    """Add an audit row. Callers pass no secret: the detail is a reason, never a credential."""
    db.add(
        AuditEvent(
            at=utcnow(),
            event=event,
            username=username[:64],
            client_addr=client_addr[:45],
            outcome=outcome,
            detail=detail[:255],
        )
    )
