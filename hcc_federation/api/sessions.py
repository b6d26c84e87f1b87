"""Log in, inspect and end a session."""

from __future__ import annotations

import colander
from cornice import Service
from cornice.validators import colander_body_validator
from pyramid.security import NO_PERMISSION_REQUIRED

from ..auth.sessions import audit
from ..timefmt import JSON_SCHEMA as TIME
from ..timefmt import rfc3339
from .docs import documented
from .responses import no_content
from .schemas import PasswordString, StrictSchema, StrictString

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


def session_json(session) -> dict:
    return {
        "username": session.username,
        "created_at": rfc3339(session.row.created_at),
        "expires_at": rfc3339(session.expires_at),
    }


@sessions.post(
    permission=NO_PERMISSION_REQUIRED,
    schema=LoginSchema(),
    validators=(colander_body_validator,),
    content_type="application/json",
)
@documented(201, 400, 401, 403, 413, 415, 429, 503, response=LOGIN_OUT, tag="sessions")
def login(request):
    """Log in with an LDAP username and password; returns a bearer token."""
    session = request.registry.hcc_login.login(
        request.dbsession,
        request.validated["username"],
        request.validated["password"],
        request.client_address,
    )
    request.response.status = 201
    return {"token": str(session.token), **session_json(session)}


@current_session.get()
@documented(200, 401, response=SESSION_OUT, tag="sessions")
def get_current_session(request):
    """The caller's session: who, since when, until when."""
    return session_json(request.identity)


@current_session.delete()
@documented(204, 401, tag="sessions")
def logout(request):
    """Log out: the token stops working at once."""
    session = request.identity
    request.registry.hcc_sessions.revoke(request.dbsession, session)
    audit(request.dbsession, "logout", session.username, request.client_address, "success")
    return no_content()
