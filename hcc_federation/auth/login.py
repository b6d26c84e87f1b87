"""Logging in and changing a password: the throttle, the directory, sessions and the audit trail."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from ..db import independent_session
from ..settings import Settings
from .directory import (
    AccountLocked,
    Directory,
    DirectoryUnavailable,
    InvalidCredentials,
    LockedByPolicy,
    PasswordRefused,
    WrongCurrentPassword,
)
from .sessions import ActiveSession, LoginThrottle, SessionStore, audit

log = logging.getLogger(__name__)

# (username, password) -> the credential to seal into the new session (see auth.custody)
CredentialMaker = Callable[[str, str], dict | None]


class LoginService:
    """Turns a username and a password into a session, or into the error that says why not.

    Plain Python (no Pyramid): the view passes the request's database session and the client's
    address, and turns the result or the exception into HTTP.
    """

    def __init__(
        self,
        *,
        throttle: LoginThrottle,
        directory: Directory,
        sessions: SessionStore,
        dbsession_factory: sessionmaker[Session],
        credential: CredentialMaker,
        username_pattern: str,
    ):
        self.throttle = throttle
        self.directory = directory
        self.sessions = sessions
        self.dbsession_factory = dbsession_factory
        self.credential = credential
        self.username_pattern = re.compile(username_pattern)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        throttle: LoginThrottle,
        directory: Directory,
        sessions: SessionStore,
        dbsession_factory: sessionmaker[Session],
        credential: CredentialMaker,
    ) -> LoginService:
        return cls(
            throttle=throttle,
            directory=directory,
            sessions=sessions,
            dbsession_factory=dbsession_factory,
            credential=credential,
            username_pattern=settings.auth.username_pattern,
        )

    def _audit_now(
        self, username: str, client_addr: str, outcome: str, detail: str, event: str = "login"
    ) -> None:
        # committed at once: the request's own transaction is rolled back with the error response
        with independent_session(self.dbsession_factory) as db:
            audit(db, event, username, client_addr, outcome, detail)

    def login(self, db: Session, username: str, password: str, client_addr: str) -> ActiveSession:
        """A new session for a right password, written in ``db`` (the caller commits it).

        Raises TooManyAttempts, InvalidCredentials (also for a malformed username and an account
        locked by ppolicy), AccountLocked or DirectoryUnavailable; each failure is audited at once.
        """
        # reserved (counted as a failure) before the directory is asked, atomically with the check of
        # the limits: concurrent attempts on any replica cannot all pass a check made before any of
        # them was recorded; raises TooManyAttempts
        attempt = self.throttle.reserve(self.dbsession_factory, username, client_addr)
        if not self.username_pattern.fullmatch(username):
            # not a login name this service accepts: never sent to the directory, same answer as unknown
            self._audit_now(username, client_addr, "failure", "malformed username")
            raise InvalidCredentials(reason="malformed username")
        try:
            person = self.directory.authenticate(username, password)
        except LockedByPolicy as exc:
            # answered like a wrong password (the password was never checked); the audit log says why
            self._audit_now(username, client_addr, "locked", exc.reason)
            raise
        except InvalidCredentials as exc:
            self._audit_now(username, client_addr, "failure", exc.reason)
            raise
        except AccountLocked:
            self._audit_now(username, client_addr, "locked", "account locked in the directory")
            raise
        except DirectoryUnavailable as exc:
            # the directory could not tell: the attempt proved nothing
            self.throttle.cancel(self.dbsession_factory, attempt)
            self._audit_now(username, client_addr, "error", exc.description)
            raise
        self.throttle.succeeded(db, attempt)
        session = self.sessions.create(
            db, person.username, client_addr, self.credential(person.username, password)
        )
        audit(db, "login", person.username, client_addr, "success")
        log.info("login of %s from %s", person.username, client_addr)
        return session

    def change_password(self, db: Session, username: str, current: str, new: str, client_addr: str) -> int:
        """Change a person's password in the directory and end every session of theirs (in ``db``,
        which the caller commits); return how many ended.

        Raises TooManyAttempts (for ``current_password``), WrongCurrentPassword, InvalidCredentials,
        PasswordRefused or DirectoryUnavailable; each failure is audited at once.
        """
        # a wrong current password is a guess like a wrong login: the same limits, checked and
        # reserved before the directory is asked
        attempt = self.throttle.reserve(
            self.dbsession_factory, username, client_addr, event="password_change", name="current_password"
        )
        try:
            self.directory.change_password(username, current, new)
        except (WrongCurrentPassword, InvalidCredentials, PasswordRefused, DirectoryUnavailable) as exc:
            if isinstance(exc, PasswordRefused):
                # the current password was right (bound), only the new one was refused
                self.throttle.succeeded_now(self.dbsession_factory, attempt)
            elif isinstance(exc, DirectoryUnavailable):
                self.throttle.cancel(self.dbsession_factory, attempt)
            self._audit_now(username, client_addr, "failure", exc.description, event="password_change")
            raise
        self.throttle.succeeded(db, attempt)
        ended = self.sessions.revoke_all(db, username)
        audit(db, "password_change", username, client_addr, "success", f"{ended} sessions ended")
        log.info("password of %s changed; %d sessions ended", username, ended)
        return ended
