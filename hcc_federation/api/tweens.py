"""Tweens that act before routing: the Host check, CORS, a URL that is not UTF-8, and the request body
size limit."""

from __future__ import annotations

import re
import urllib.parse

from cornice.service import get_services
from pyramid.urldispatch import Route

from .errors import error_response
from .responses import no_content

# MyAuthorization: the legacy hcc-jobs portal's own header (hcc_federation/legacy)
ALLOWED_HEADERS = "Authorization, Content-Type, If-Match, If-None-Match, MyAuthorization, Range"
EXPOSED_HEADERS = (
    "ETag, Content-Disposition, Content-Length, Content-Range, Retry-After, WWW-Authenticate,"
    " X-Output-Size, X-Output-Offset, X-Job-State, X-Job-Running"
)
ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


def streaming_body_routes(services=None) -> list[tuple[str, Route]]:
    """(method, route) of every view whose request body is not JSON: a file's bytes or a form.

    Such a body is streamed to the cluster (never held in memory) under its own, larger limit.
    The body limit acts before routing, so it matches the services' own paths, read from their
    declarations (``documented(body=...)``) rather than kept here a second time.
    """
    routes = []
    for service in services if services is not None else get_services():
        for method, view, _ in service.definitions:
            if getattr(view, "hcc_body", None):
                routes.append((method, Route(service.name, service.path)))
    return routes


def undecodable_url(environ: dict) -> tuple[str, str, str] | None:
    """(location, name, description) when the path or the query string is not UTF-8 once unescaped.

    PEP 3333 hands the path over as latin-1 text of the raw bytes; WebOb decodes it as UTF-8 on
    every ``request.path_info``/``request.path``/``request.GET`` and raises UnicodeDecodeError,
    in the router and again in any error view that names the path (a ``%ff`` was a plain-text 500).
    """
    for key in ("SCRIPT_NAME", "PATH_INFO"):
        try:
            environ.get(key, "").encode("latin-1").decode("utf-8")
        except UnicodeError:
            return "url", "path", "the URL path is not valid UTF-8 once its %-escapes are decoded"
    # the same decoding as WebOb's request.GET, strict, one pair at a time to name the parameter
    for pair in environ.get("QUERY_STRING", "").split("&"):
        key, _, value = pair.partition("=")
        try:
            name = urllib.parse.unquote_to_bytes(key.replace("+", " ")).decode("utf-8")
        except UnicodeError:
            return "querystring", "querystring", "a parameter name is not valid UTF-8 once unescaped"
        try:
            urllib.parse.unquote_to_bytes(value.replace("+", " ")).decode("utf-8")
        except UnicodeError:
            name = name[:100]
            return "querystring", name, f"{name} is not valid UTF-8 once its %-escapes are decoded"
    return None


def url_encoding_tween_factory(handler, registry):
    """400 in the envelope for a URL that is not UTF-8, before routing or any tween reads the path."""

    def url_encoding_tween(request):
        problem = undecodable_url(request.environ)
        if problem is not None:
            return error_response(400, *problem)
        return handler(request)

    return url_encoding_tween


def host_name(host: str) -> str:
    """The name part of a Host header value, lower case: no port, an IPv6 address kept in brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if ":" in host else host


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``host`` (a Host header) names one of ``allowed``; ".example.org" takes its subdomains."""
    name = host_name(host)
    return any(name == a or (a.startswith(".") and (name.endswith(a) or name == a[1:])) for a in allowed)


def allowed_host_tween_factory(handler, registry):
    """400 for a Host header outside hcc.api.allowed_hosts, before anything builds a URL from it.

    The service writes absolute URLs (download links) from the Host a request names: a forged Host
    would hand out links to another site. No list (development) lets every host through.
    """
    allowed = registry.hcc_settings.api.allowed_hosts
    if not allowed:
        return handler

    def allowed_host_tween(request):
        # the Host that WebOb builds URLs from: X-Forwarded-Host when the server believed the proxy
        host = request.environ.get("HTTP_HOST") or request.environ.get("SERVER_NAME", "")
        if not host_allowed(host, allowed):
            return error_response(400, "header", "Host", f"host {host_name(host)[:100]!r} is not served here")
        return handler(request)

    return allowed_host_tween


def no_store_tween_factory(handler, registry):
    """Answers are personal (a person's jobs, files, profile): no cache keeps them unless a view
    says otherwise."""

    def no_store_tween(request):
        response = handler(request)
        if "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        return response

    return no_store_tween


def cors_tween_factory(handler, registry):
    origins = set(registry.hcc_settings.api.cors_origins)
    any_origin = "*" in origins

    def allowed(origin: str | None) -> bool:
        return bool(origin) and (any_origin or origin in origins)

    def cors_tween(request):
        origin = request.headers.get("Origin")
        preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        if preflight:
            if not allowed(origin):
                return error_response(403, "header", "Origin", f"origin {origin!r} is not allowed")
            response = no_content()
            response.headers.update(
                {
                    "Access-Control-Allow-Methods": ALLOWED_METHODS,
                    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                    "Access-Control-Max-Age": "600",
                }
            )
        else:
            response = handler(request)
        if allowed(origin):
            # bearer tokens, not cookies: no Allow-Credentials, and echo the origin, never "*"
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        response.vary = tuple(sorted(set(response.vary or ()) | {"Origin"}))
        return response

    return cors_tween


# Deeper JSON is refused before anything parses it: Python's json recurses once per level and a
# 200 KB body of "[" (under the 1 MiB limit) raised RecursionError, a 500. No request of this API
# nests more than three levels.
MAX_JSON_DEPTH = 64
_JSON_CONTENT_TYPE = re.compile(r"^application/(.*?)json$")
_CHARSET = re.compile(r';\s*charset\s*=\s*"?([^";\s]*)', re.IGNORECASE)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON text opens more than ``limit`` arrays or objects inside one another.

    A scan of the bytes, not a parse: strings (where brackets are text) are cut out, then only the
    brackets are walked. Malformed JSON is left to the parser to refuse.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # the usual case, at C speed
    depth = 0
    for byte in _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        if byte in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _close_copied_body(request) -> None:
    """Close WebOb's copy of a body read into a temporary file (over 10 KiB), which it never closes.

    Only when WebOb made the copy (it marks the environ): a server's own input stream is not ours.
    """
    if request.environ.get("webob.is_body_seekable"):
        body = request.environ.get("wsgi.input")
        if body is not None:
            body.close()


def body_limit_tween_factory(handler, registry):
    json_limit = registry.hcc_settings.api.max_body_bytes
    upload_limit = registry.hcc_settings.files.max_upload_bytes
    streaming = streaming_body_routes()

    def body_limit_tween(request):
        request.add_finished_callback(_close_copied_body)
        # refuse before anything reads the body; streaming routes (uploads) have their own limit
        path = request.path_info
        # the view reads request.body_file in chunks and counts again (a chunked body has no length)
        upload = any(
            method == request.method and route.match(path) is not None for method, route in streaming
        )
        limit = upload_limit if upload else json_limit
        length = request.content_length
        if length is not None and length > limit:
            return error_response(413, "body", "body", f"the request body is larger than {limit} bytes")
        # what Cornice parses as JSON: a JSON media type, or none at all
        if (
            not upload
            and request.is_body_readable
            and _JSON_CONTENT_TYPE.match(request.content_type or "application/json")
        ):
            charset = _CHARSET.search(request.environ.get("CONTENT_TYPE", ""))
            if charset and charset.group(1).lower() not in ("utf-8", "utf8"):
                # RFC 8259 8.1: JSON between systems is UTF-8. WebOb decodes by the declared charset,
                # and an unknown one raised LookupError (a 500).
                return error_response(
                    415, "header", "Content-Type", "a JSON body is UTF-8; declare charset=utf-8 or none"
                )
            if json_too_deep(request.body):
                return error_response(
                    400, "body", "body", f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels"
                )
        return handler(request)

    return body_limit_tween
