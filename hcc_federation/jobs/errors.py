"""Slurm's failures as the jobs feature raises them (each carries its HTTP status)."""

from __future__ import annotations

from hcc_federation.errors import BadRequest, Conflict, Forbidden, NotFound, ServiceError


class SlurmError(ServiceError):
    """Slurm failed in a way the client cannot fix (a command failed, or printed what we cannot read)."""

    status = 502
    location = "path"
    name = "cluster"


class SlurmUnavailable(SlurmError):
    """The controller or the accounting daemon did not answer."""

    status = 503


class SlurmBadRequest(SlurmError, BadRequest):
    """An argument was refused before anything ran (bad job id, date, state, path...)."""

    # Both bases define these: say which wins (SlurmError comes first in the MRO).
    status = 400
    location = "querystring"
    name = "error"


class SlurmRefused(SlurmError, BadRequest):
    """sbatch refused the job; the description is Slurm's own message."""

    status = 400
    location = "body"
    name = "script"


class JobNotFound(SlurmError, NotFound):
    status = 404
    location = "path"
    name = "job_id"


class JobForbidden(SlurmError, Forbidden):
    status = 403
    location = "path"
    name = "job_id"


class JobFinished(SlurmError, Conflict):
    status = 409
    location = "path"
    name = "job_id"
