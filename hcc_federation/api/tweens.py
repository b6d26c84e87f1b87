"""Tweens that act before routing: CORS and the request body size limit."""

from __future__ import annotations

import re

from .errors import error_response
from .responses import no_content

ALLOWED_HEADERS = "Authorization, Content-Type, If-Match, If-None-Match, Range"
EXPOSED_HEADERS = "ETag, Content-Disposition, Content-Length, Content-Range, Retry-After, WWW-Authenticate"
ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
# File uploads stream their body to the cluster (never held in memory) under their own, larger limit.
STREAMING_BODY_ROUTES = {
    "PUT": re.compile(r"^/api/v1/clusters/[^/]+/files/content$"),
    "POST": re.compile(r"^/api/v1/clusters/[^/]+/files/upload$"),
}


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

    def body_limit_tween(request):
        request.add_finished_callback(_close_copied_body)
        # refuse before anything reads the body; streaming routes (uploads) declare their own limit
        if getattr(request, "hcc_streaming_body", False):
            return handler(request)
        limit = json_limit
        pattern = STREAMING_BODY_ROUTES.get(request.method)
        if pattern is not None and pattern.match(request.path_info):
            # the view reads request.body_file in chunks and counts again (a chunked body has no length)
            request.hcc_streaming_body = True
            limit = upload_limit
        length = request.content_length
        if length is not None and length > limit:
            return error_response(413, "body", "body", f"the request body is larger than {limit} bytes")
        return handler(request)

    return body_limit_tween
