"""The caller's own profile and password."""

from __future__ import annotations

import logging

import colander
from cornice import Service
from cornice.validators import colander_body_validator

from ..auth.directory import DirectoryUnavailable, InvalidCredentials, PasswordRefused, WrongCurrentPassword
from ..auth.policy import AUTHENTICATED
from ..auth.sessions import audit
from ..db import independent_session
from ..errors import NotFound
from .docs import documented
from .responses import no_content
from .schemas import PasswordString, StrictSchema

log = logging.getLogger(__name__)

me = Service(name="me", path="/api/v1/me", description="The caller's profile")
my_password = Service(name="my_password", path="/api/v1/me/password", description="The caller's password")

PROFILE_OUT = {
    "type": "object",
    "required": ["username", "fullname", "email", "description", "groups"],
    "properties": {
        "username": {"type": "string"},
        "fullname": {"type": ["string", "null"]},
        "email": {"type": ["string", "null"]},
        "description": {"type": ["string", "null"]},
        "groups": {"type": "array", "items": {"type": "string"}},
    },
}


@me.get(permission=AUTHENTICATED)
@documented(200, 401, 404, 503, response=PROFILE_OUT, tag="me")
def get_me(request):
    """The caller's profile and groups, from the directory."""
    person = request.registry.hcc_directory.profile(request.identity.username)
    if person is None:
        raise NotFound(f"user {request.identity.username} is no longer in the directory", name="username")
    return {
        "username": person.username,
        "fullname": person.fullname,
        "email": person.email,
        "description": person.description,
        "groups": person.groups,
    }


class PasswordChangeSchema(StrictSchema):
    current_password = colander.SchemaNode(PasswordString(), validator=colander.Length(min=1, max=1024))
    new_password = colander.SchemaNode(PasswordString(), validator=colander.Length(min=1, max=1024))


@my_password.put(
    permission=AUTHENTICATED,
    schema=PasswordChangeSchema(),
    validators=(colander_body_validator,),
    content_type="application/json",
)
@documented(204, 400, 401, 413, 415, 429, 503, tag="me")
def change_password(request):
    """Change the caller's password in the directory; every session of the caller then ends."""
    registry = request.registry
    username = request.identity.username
    addr = request.client_address
    # a wrong current password is a guess like a wrong login: the same limits, checked and reserved
    # before the directory is asked (raises TooManyAttempts, 429)
    attempt = registry.hcc_throttle.reserve(
        registry.hcc_dbsession_factory, username, addr, event="password_change", name="current_password"
    )
    try:
        registry.hcc_directory.change_password(
            username, request.validated["current_password"], request.validated["new_password"]
        )
    except (WrongCurrentPassword, InvalidCredentials, PasswordRefused, DirectoryUnavailable) as exc:
        if isinstance(exc, PasswordRefused):
            # the current password was right (bound), only the new one was refused
            registry.hcc_throttle.succeeded_now(registry.hcc_dbsession_factory, attempt)
        elif isinstance(exc, DirectoryUnavailable):
            registry.hcc_throttle.cancel(registry.hcc_dbsession_factory, attempt)
        # committed on its own: the request's transaction is rolled back with the error
        with independent_session(registry.hcc_dbsession_factory) as db:
            audit(db, "password_change", username, addr, "failure", exc.description)
        raise
    registry.hcc_throttle.succeeded(request.dbsession, attempt)
    ended = request.registry.hcc_sessions.revoke_all(request.dbsession, username)
    audit(request.dbsession, "password_change", username, addr, "success", f"{ended} sessions ended")
    log.info("password of %s changed; %d sessions ended", username, ended)
    return no_content()
