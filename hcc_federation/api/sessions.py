"""Log in, inspect and end a session."""

from __future__ import annotations

import logging
import re

import colander
from cornice import Service
from cornice.validators import colander_body_validator

from ..auth.custody import session_credential
from ..auth.directory import AccountLocked, DirectoryUnavailable, InvalidCredentials, LockedByPolicy
from ..auth.policy import AUTHENTICATED
from ..auth.sessions import audit
from ..db import independent_session
from ..timefmt import JSON_SCHEMA as TIME
from ..timefmt import rfc3339
from .docs import documented
from .responses import no_content
from .schemas import PasswordString, StrictSchema, StrictString

log = logging.getLogger(__name__)

sessions = Service(name="sessions", path="/api/v1/sessions", description="Log in")
current_session = Service(
    name="current_session", path="/api/v1/sessions/current", description="The caller's session"
)

SESSION_OUT = {
    "type": "object",
    "required": ["username", "expires_at", "created_at"],
    "properties": {
        "username": {"type": "string"},
        "expires_at": TIME,
        "created_at": TIME,
    },
}
LOGIN_OUT = {
    "type": "object",
    "required": ["token", *SESSION_OUT["required"]],
    "properties": {"token": {"type": "string"}, **SESSION_OUT["properties"]},
}


class LoginSchema(StrictSchema):
    username = colander.SchemaNode(StrictString(), validator=colander.Length(min=1, max=256))
    password = colander.SchemaNode(PasswordString(), validator=colander.Length(min=1, max=1024))


def _audit_now(request, username: str, outcome: str, detail: str) -> None:
    # committed at once: the request's own transaction is rolled back with the error response
    with independent_session(request.registry.hcc_dbsession_factory) as db:
        audit(db, "login", username, request.client_address, outcome, detail)


def session_json(session) -> dict:
    return {
        "username": session.username,
        "created_at": rfc3339(session.row.created_at),
        "expires_at": rfc3339(session.expires_at),
    }


@sessions.post(schema=LoginSchema(), validators=(colander_body_validator,), content_type="application/json")
@documented(201, 400, 401, 403, 413, 415, 429, 503, response=LOGIN_OUT, tag="sessions")
def login(request):
    """Log in with an LDAP username and password; returns a bearer token."""
    registry = request.registry
    username, password = request.validated["username"], request.validated["password"]
    addr = request.client_address
    # reserved (counted as a failure) before the directory is asked, atomically with the check of
    # the limits: concurrent attempts on any replica cannot all pass a check made before any of them
    # was recorded; raises TooManyAttempts (429)
    attempt = registry.hcc_throttle.reserve(registry.hcc_dbsession_factory, username, addr)
    if not re.fullmatch(registry.hcc_settings.auth.username_pattern, username):
        # not a login name this service accepts: never sent to the directory, same answer as unknown
        _audit_now(request, username, "failure", "malformed username")
        raise InvalidCredentials(reason="malformed username")
    try:
        person = registry.hcc_directory.authenticate(username, password)
    except LockedByPolicy as exc:
        # answered like a wrong password (the password was never checked); the audit log says why
        _audit_now(request, username, "locked", exc.reason)
        raise
    except InvalidCredentials as exc:
        _audit_now(request, username, "failure", exc.reason)
        raise
    except AccountLocked:
        _audit_now(request, username, "locked", "account locked in the directory")
        raise
    except DirectoryUnavailable as exc:
        # the directory could not tell: the attempt proved nothing
        registry.hcc_throttle.cancel(registry.hcc_dbsession_factory, attempt)
        _audit_now(request, username, "error", exc.description)
        raise
    db = request.dbsession
    registry.hcc_throttle.succeeded(db, attempt)
    session = registry.hcc_sessions.create(
        db, person.username, addr, session_credential(registry, person.username, password)
    )
    audit(db, "login", person.username, addr, "success")
    log.info("login of %s from %s", person.username, addr)
    request.response.status = 201
    return {"token": str(session.token), **session_json(session)}


@current_session.get(permission=AUTHENTICATED)
@documented(200, 401, response=SESSION_OUT, tag="sessions")
def get_current_session(request):
    """The caller's session: who, since when, until when."""
    return session_json(request.identity)


@current_session.delete(permission=AUTHENTICATED)
@documented(204, 401, tag="sessions")
def logout(request):
    """Log out: the token stops working at once."""
    session = request.identity
    request.registry.hcc_sessions.revoke(request.dbsession, session)
    audit(request.dbsession, "logout", session.username, request.client_address, "success")
    return no_content()
