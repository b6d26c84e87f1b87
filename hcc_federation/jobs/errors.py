"""Slurm's failures as the jobs feature raises them: what happened and which field it concerns."""

from __future__ import annotations

from hcc_federation.errors import DomainError, InvalidArgument


class SlurmError(DomainError):
    """Slurm failed in a way the client cannot fix (a command failed, or printed what we cannot read)."""

    field = "cluster"


class SlurmUnavailable(SlurmError):
    """The controller or the accounting daemon did not answer."""


class InvalidJobArgument(InvalidArgument):
    """An argument was refused before anything ran (bad job id, date, state, path...)."""


class SlurmRefused(SlurmError):
    """sbatch refused the job; the description is Slurm's own message."""

    field = "script"


class JobError(DomainError):
    """A failure about one job; ``job_id`` names it."""

    field = "job_id"

    def __init__(self, description: str, *, job_id: str | None = None):
        super().__init__(description)
        self.job_id = job_id


class JobNotFound(JobError):
    """No such job on this cluster."""


class JobForbidden(JobError):
    """The job belongs to another user."""


class JobFinished(JobError):
    """The job already finished: it cannot be cancelled any more."""


class OutputUnknown(JobError):
    """Where the job writes its output cannot be known (the description says why)."""

    field = "stream"


class OutputNotFound(JobError):
    """The job's output file does not exist (yet); ``path`` names it."""

    field = "stream"

    def __init__(self, description: str, *, job_id: str | None = None, path: str | None = None):
        super().__init__(description, job_id=job_id)
        self.path = path
