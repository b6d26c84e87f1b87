"""Typed failures of long file operations (the API maps them in api/error_map.py)."""

from __future__ import annotations

from hcc_federation.errors import DomainError


class OperationNotFound(DomainError):
    """No operation of this id belongs to the caller (another user's is answered the same way)."""

    field = "id"


class OperationFinished(DomainError):
    """The operation already ended (done, failed or cancelled): nothing left to cancel."""

    field = "id"


class WorkerNotStarted(DomainError):
    """The cluster refused to start the operation's worker (sbatch or the detached process failed)."""

    field = "cluster"
