"""What the OpenAPI document needs to know about a view beyond its Cornice definition."""

from __future__ import annotations

from collections.abc import Callable


def documented(*statuses: int, response: dict | None = None, tag: str | None = None) -> Callable:
    """Record a view's possible statuses and the JSON schema of its success body.

    The first line of the view's docstring becomes the operation's summary.
    """

    def decorate(view):
        view.hcc_statuses = statuses
        view.hcc_response = response
        view.hcc_tag = tag
        return view

    return decorate
