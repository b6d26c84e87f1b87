"""The base of every domain failure: what happened and which field it concerns, nothing about HTTP."""


class DomainError(Exception):
    """A failure the client should hear about, described in the domain's own terms.

    ``field`` names what the failure concerns (``path``, ``job_id``, ``cluster``...): the API
    layer shows it as the envelope's ``name``. The status, the envelope's ``location`` and the
    machine-readable ``code`` are chosen by exception type in one table, ``api/error_map.py``.
    """

    field: str = "error"
    # seconds after which trying again may succeed; the API answers it as Retry-After
    retry_after: int | None = None

    def __init__(self, description: str, *, field: str | None = None):
        super().__init__(description)
        self.description = description
        if field is not None:
            self.field = field


class InvalidArgument(DomainError):
    """An argument was refused before anything ran; ``field`` names the argument."""
