"""Success responses that the JSON renderer does not make by itself."""

from collections.abc import Iterable

from pyramid.response import Response

# What Cornice's JSON renderer offers, in its order: a client that accepts only text/plain gets it
_JSON_OFFERS = ("application/json", "text/plain")


def no_content() -> Response:
    """204 with no body and no Content-Type (RFC 9110: a 204 has no content to describe)."""
    response = Response(status=204)
    del response.content_type
    return response


def encoded_json(request, chunks: Iterable[bytes], *, length: int | None = None) -> Response:
    """A 200 whose body is JSON text already encoded (UTF-8 chunks), with the Content-Type that
    Cornice's renderer gives a dict (application/json, or text/plain for a client that takes only
    that). For answers too large to build as dicts first (files.DirectoryPage.json_chunks); a
    ``length`` sends Content-Length, else the server sends the chunks as they come."""
    offers = request.accept.acceptable_offers(offers=_JSON_OFFERS)
    kind = offers[0][0] if offers else _JSON_OFFERS[0]
    response = Response(app_iter=chunks, content_type=kind)
    if kind == "text/plain":
        response.charset = "UTF-8"
    if length is not None:
        response.content_length = length
    return response
