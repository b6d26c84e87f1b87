"""The notebook feature's failures: what happened and which field it concerns."""

from __future__ import annotations

from hcc_federation.errors import DomainError, InvalidArgument


class InvalidNotebookArgument(InvalidArgument):
    """A start argument outside what the cluster allows (mode, hours, cpus, memory, partition)."""


class NotebookNotFound(DomainError):
    """No such notebook of the caller's on this cluster (another person's is not found either)."""

    field = "notebook_id"


class NotebookLimitReached(DomainError):
    """The caller already holds the cluster's ``notebook_max_per_user`` live notebooks."""

    field = "cluster"
    retry_after = 60


class NoFreePort(DomainError):
    """Every port of the cluster's notebook range is held by a live notebook on that host."""

    field = "cluster"
    retry_after = 60


class NotebookCommandFailed(DomainError):
    """Preparing, starting or stopping the server on the cluster failed; the description says how."""

    field = "cluster"


class NotebookJobRefused(DomainError):
    """sbatch refused the notebook's job (the request's resources, the site's template); Slurm's message."""

    field = "body"
