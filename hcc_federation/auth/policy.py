"""The security policy: a bearer token becomes an identity with one indexed lookup."""

from __future__ import annotations

from pyramid.security import Allowed, Denied

from ..db import independent_session
from .sessions import ActiveSession

AUTHENTICATED = "authenticated"


def bearer_token(request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def myauthorization_parts(request) -> tuple[str, str] | None:
    """(token, base64 of the password) of the legacy portal's ``MyAuthorization: <token>$<b64>``."""
    header = request.headers.get("MyAuthorization", "")
    token, sep, password = header.partition("$")
    if not sep or not token.strip():
        return None
    return token.strip(), password.strip()


def request_token(request) -> str | None:
    """The session token a request presents: a bearer token, or on the legacy portal's routes (the
    route names that ``registry.hcc_myauthorization_routes`` lists) the token part of MyAuthorization.

    The legacy header's password part is never used to authenticate: the credential was sealed at login.
    """
    token = bearer_token(request)
    if token is not None:
        return token
    route = getattr(request, "matched_route", None)
    routes = getattr(request.registry, "hcc_myauthorization_routes", frozenset())
    if route is None or route.name not in routes:
        return None
    parts = myauthorization_parts(request)
    return parts[0] if parts is not None else None


class BearerTokenSecurityPolicy:
    def identity(self, request) -> ActiveSession | None:
        token = request_token(request)
        if token is None:
            return None
        registry = request.registry
        # a token verified moments ago needs no database session at all (making one costs too)
        cached = registry.hcc_sessions.cached(token)
        if cached is not None:
            return cached

        def touch(session_id, now):
            with independent_session(registry.hcc_dbsession_factory) as db:
                registry.hcc_sessions.touch(db, session_id, now)

        return registry.hcc_sessions.lookup(request.dbsession, token, touch=touch)

    def authenticated_userid(self, request) -> str | None:
        identity = request.identity
        return identity.username if identity is not None else None

    def permits(self, request, context, permission):
        if permission == AUTHENTICATED and request.identity is not None:
            return Allowed("a live session")
        return Denied("no live session")

    def remember(self, request, userid, **kw):
        return []

    def forget(self, request, **kw):
        return []
