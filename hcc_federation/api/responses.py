"""Success responses that the JSON renderer does not make by itself."""

from pyramid.response import Response


def no_content() -> Response:
    """204 with no body and no Content-Type (RFC 9110: a 204 has no content to describe)."""
    response = Response(status=204)
    del response.content_type
    return response
