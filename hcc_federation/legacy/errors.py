"""Failures of the legacy portal layer that no other package raises."""

from __future__ import annotations

from ..errors import DomainError


class NotebooksNotAvailable(DomainError):
    """The notebook routes of the legacy portal answer nothing yet: notebooks are not wired in."""

    field = "cluster"
