"""What the OpenAPI document needs to know about a view beyond its Cornice definition."""

from __future__ import annotations

from collections.abc import Callable


def documented(
    *statuses: int,
    response: dict | None = None,
    tag: str | None = None,
    headers: tuple[str, ...] = (),
    body: dict | None = None,
    content: dict | None = None,
    response_headers: dict | None = None,
) -> Callable:
    """Record a view's possible statuses and the JSON schema of its success body.

    ``headers`` names the request headers the view acts on (Range, If-Match...); ``body`` is the
    request body's ``content`` map when it is not a colander JSON schema (a file's bytes, a form);
    ``content`` is the success body's ``content`` map when it is not JSON; ``response_headers`` the
    headers of a success answer (an OpenAPI ``headers`` map). The first line of the
    view's docstring becomes the operation's summary.
    """

    def decorate(view):
        view.hcc_statuses = statuses
        view.hcc_response = response
        view.hcc_tag = tag
        view.hcc_headers = headers
        view.hcc_body = body
        view.hcc_content = content
        view.hcc_response_headers = response_headers
        return view

    return decorate
