"""Failures that carry their HTTP status, rendered by the API in the one error envelope."""


class ServiceError(Exception):
    """A failure the client should see: an HTTP status, a location and a name for the envelope.

    Domain code raises subclasses of this without knowing about HTTP frameworks; the API's
    exception view turns any of them into ``{"status": "error", "errors": [...]}``.
    """

    status: int = 500
    location: str = "body"
    name: str = "error"

    def __init__(self, description: str, *, name: str | None = None, location: str | None = None):
        super().__init__(description)
        self.description = description
        # extra response headers, e.g. Retry-After
        self.headers: dict[str, str] = {}
        if name is not None:
            self.name = name
        if location is not None:
            self.location = location


class BadRequest(ServiceError):
    status = 400


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404
    location = "path"


class Conflict(ServiceError):
    status = 409
