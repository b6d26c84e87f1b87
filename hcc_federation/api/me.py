"""The caller's own profile and password."""

from __future__ import annotations

import colander
from cornice import Service
from cornice.validators import colander_body_validator

from ..auth.directory import UnknownUser
from .docs import documented
from .responses import no_content
from .schemas import PasswordString, StrictSchema

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


@me.get()
@documented(200, 401, 404, 503, response=PROFILE_OUT, tag="me")
def get_me(request):
    """The caller's profile and groups, from the directory."""
    return profile_json(request.registry.hcc_directory, request.identity.username)


def profile_json(directory, username: str) -> dict:
    """A person's profile and groups from the directory; UnknownUser if they left it."""
    person = directory.profile(username)
    if person is None:
        raise UnknownUser(f"user {username} is no longer in the directory")
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
    schema=PasswordChangeSchema(),
    validators=(colander_body_validator,),
    content_type="application/json",
)
@documented(204, 400, 401, 413, 415, 429, 503, tag="me")
def change_password(request):
    """Change the caller's password in the directory; every session of the caller then ends."""
    request.registry.hcc_login.change_password(
        request.dbsession,
        request.identity.username,
        request.validated["current_password"],
        request.validated["new_password"],
        request.client_address,
    )
    return no_content()
