"""One error envelope for every 4xx and 5xx, with the codes of api/error_map.py."""

from __future__ import annotations

import json
import logging
import math
import urllib.parse

from cornice.renderer import CorniceRenderer, JSONError
from pyramid.httpexceptions import HTTPException, HTTPForbidden, HTTPNotFound
from pyramid.response import Response
from pyramid.view import exception_view_config
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from webob.request import PATH_SAFE

from ..auth.policy import bearer_token
from ..errors import DomainError
from ..files.errors import RangeNotSatisfiable
from .error_map import code_for_status, http_mapping, mapping_for

log = logging.getLogger(__name__)


def error_response(
    status: int,
    location: str,
    name: str,
    description: str,
    headers: dict[str, str] | None = None,
    *,
    code: str | None = None,
) -> Response:
    """The envelope with one entry; ``code`` defaults to the plain HTTP error's of ``status``."""
    entry = {
        "location": location,
        "name": name,
        "description": description,
        "code": code or code_for_status(status),
    }
    body = {"status": "error", "errors": [entry]}
    response = Response(json.dumps(body), status=status, content_type="application/json", charset="utf-8")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def unauthorized(
    request, description: str = "a valid bearer token is required", code: str = "unauthenticated"
) -> Response:
    # RFC 6750: tell a client that presented a token that this token is the problem
    challenge = 'Bearer realm="hcc-federation"'
    if bearer_token(request) is not None:
        challenge += ', error="invalid_token"'
    return error_response(
        401, "header", "Authorization", description, {"WWW-Authenticate": challenge}, code=code
    )


def request_path(request) -> str:
    """The request's path, %-escaped as ``request.path`` gives it, whatever bytes the client sent.

    ``request.path`` first decodes the path as UTF-8 and raises on ``%ff``: an error view that used
    it crashed, and the client got the server's plain-text 500. Escaping the raw bytes gives the
    same text for a valid path, and keeps a CR or LF out of log lines.
    """
    environ = request.environ
    raw = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1", "replace")
    return urllib.parse.quote(raw, safe=PATH_SAFE)[:2000]


def _has_identity(request) -> bool:
    try:
        return request.identity is not None
    except Exception:  # the database may be what failed; then nobody is known
        return False


class CodedRenderer(CorniceRenderer):
    """Cornice's renderer, whose own errors (its validators' 400s, its 406 and 415) carry a code too."""

    def render_errors(self, request):
        code = code_for_status(request.errors.status)
        for entry in request.errors:
            entry.setdefault("code", code)
        return super().render_errors(request)


def field_location(request, field: str) -> str:
    """Where the request carried ``field``: the URL path, a header, the query string or the body.

    Domain code names the field it refused, never where it came from: the same path rule checks a
    query parameter on GET /files and a JSON member on POST /files/copy. A field the request lacks
    is one the client was expected to send: in the query string of a method without a body.
    """
    if field in (request.matchdict or {}):
        return "path"
    if field in request.headers:
        return "header"
    if field in request.GET:
        return "querystring"
    return "querystring" if request.method in ("GET", "HEAD", "DELETE") else "body"


def failure_headers(exc: BaseException, request) -> dict[str, str]:
    """Headers a failure's answer carries: Retry-After when trying later may work, Content-Range on a 416."""
    headers: dict[str, str] = {}
    if isinstance(exc, DBAPIError | PoolTimeout):
        # the breaker fails calls fast for failure_cooldown seconds: trying sooner is pointless
        headers["Retry-After"] = str(
            max(1, math.ceil(request.registry.hcc_settings.database.failure_cooldown))
        )
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if isinstance(exc, RangeNotSatisfiable) and exc.size is not None:
        # what RFC 9110 asks a 416 to carry
        headers["Content-Range"] = f"bytes */{exc.size}"
    return headers


@exception_view_config(DomainError, renderer=None)
@exception_view_config(PoolTimeout, renderer=None)
@exception_view_config(DBAPIError, renderer=None)
def failure_view(exc: Exception, request) -> Response:
    """Any mapped failure, answered as ERROR_MAP says."""
    row = mapping_for(exc)
    if row is None:  # not reachable for the registered types (DomainError is in the map); be safe
        return internal_error_view(exc, request)
    if isinstance(exc, DBAPIError | PoolTimeout):
        # never echo a driver's message: it may carry SQL or the server's name
        # PoolTimeout: every pooled connection stayed in use for hcc.database.pool_timeout
        log.error(
            "database error on %s %s: %s", request.method, request_path(request), exc.__class__.__name__
        )
        description, name = "the registry database is unavailable, try again later", "database"
    else:
        description, name = exc.description, exc.field
        if row.status >= 500:
            log.warning("%s %s -> %d: %s", request.method, request_path(request), row.status, description)
    if row.status == 401:
        return unauthorized(request, description, row.code)
    location = row.location or field_location(request, name)
    return error_response(
        row.status, location, name, description, failure_headers(exc, request), code=row.code
    )


# Cornice registers its own views for these two; ours must be at least as specific to win.
@exception_view_config(HTTPNotFound, renderer=None)
@exception_view_config(HTTPForbidden, renderer=None)
@exception_view_config(HTTPException, renderer=None)
def http_error_view(exc: HTTPException, request) -> Response:
    if isinstance(exc, JSONError):  # Cornice's 406 and 415: CodedRenderer gave them their codes
        return exc
    if exc.code == 403 and not _has_identity(request):
        # permission denied because nobody is logged in: that is a 401 with a challenge
        return unauthorized(request)
    if exc.code == 401:
        return unauthorized(request)
    if exc.code < 400:  # a redirect or success raised on purpose passes through
        return exc
    row = http_mapping(exc.code)
    if exc.code == 404:
        description = f"no such resource: {request_path(request)}"
    elif exc.code == 405:
        description = f"method {request.method} is not allowed here"
    else:
        description = exc.detail or exc.explanation or exc.title
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return error_response(exc.code, row.location, row.name, str(description), headers, code=row.code)


@exception_view_config(Exception, renderer=None)
def internal_error_view(exc: Exception, request) -> Response:
    log.exception("unexpected error on %s %s", request.method, request_path(request))
    # never echo the exception: it may carry paths, commands or secrets
    row = http_mapping(500)
    return error_response(500, row.location, row.name, "internal error; it has been logged", code=row.code)


def cluster_error(cluster: str, exc: BaseException, what: str) -> dict:
    """One cluster's entry in the ``errors`` of an all-clusters list of ``what`` (jobs, notebooks,
    operations): a mapped failure as its status and code; anything else a logged 500 that says no more."""
    row = mapping_for(exc) if isinstance(exc, DomainError) else None
    if row is not None:
        return {"cluster": cluster, "status": row.status, "code": row.code, "description": exc.description}
    log.error("listing %s on %s failed", what, cluster, exc_info=exc)
    description = f"internal error while listing this cluster's {what}"
    return {"cluster": cluster, "status": 500, "code": "internal_error", "description": description}
