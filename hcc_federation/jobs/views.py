"""Slurm jobs on each cluster, and on every cluster at once: list, detail, submit, cancel."""

from __future__ import annotations

import functools
import logging
import posixpath
import re
from collections.abc import Callable

from cornice import Service
from cornice.validators import colander_body_validator, colander_querystring_validator
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from ..api.docs import documented
from ..api.errors import cluster_error
from ..api.responses import no_content
from ..clusters import ClusterAccess
from ..db import independent_session
from ..errors import DomainError
from ..models import JobSubmission
from .client import SlurmClient
from .federated import list_everywhere
from .output import RecordedOutput
from .parsers import newest_first, restore_recorded_names
from .schemas import (
    FEDERATED_OUT,
    JOB_DETAIL_OUT,
    JOB_LIST_OUT,
    SUBMITTED_OUT,
    ListJobsSchema,
    SubmitJobSchema,
)
from .validation import validate_job_id

log = logging.getLogger(__name__)

cluster_jobs = Service(
    name="cluster_jobs",
    path="/api/v1/clusters/{cluster}/jobs",
    description="The caller's jobs on one cluster",
)
cluster_job = Service(
    name="cluster_job", path="/api/v1/clusters/{cluster}/jobs/{job_id}", description="One job on one cluster"
)
all_jobs = Service(name="all_jobs", path="/api/v1/jobs", description="The caller's jobs on every cluster")


def slurm_client(request, access: ClusterAccess) -> SlurmClient:
    """Slurm on the access's cluster as the caller, each command bounded by the cluster's command timeout."""
    return SlurmClient(
        access.run, timeout=access.cluster.settings.command_timeout, fanout=request.registry.hcc_fanout
    )


def with_recorded_names(request, cluster: str, jobs: list) -> list:
    """Jobs with the exact names the registry kept where Slurm's accounting altered them."""
    altered = [job["id"] for job in jobs if job.get("name") and "`" in job["name"]]
    if altered:
        rows = request.dbsession.execute(
            select(JobSubmission.job_id, JobSubmission.name)
            .where(
                JobSubmission.cluster == cluster,
                JobSubmission.username == request.identity.username,
                JobSubmission.job_id.in_(altered),
                JobSubmission.name.is_not(None),
            )
            # the newest submission of an id wins (ids restart after a controller reset)
            .order_by(JobSubmission.id)
        )
        restore_recorded_names(jobs, {job_id: name for job_id, name in rows})
    return jobs


def recorded_output(request, cluster: str, job_id: str) -> Callable[[], RecordedOutput | None]:
    """What the registry kept at submit time about the job's output, looked up only when asked."""
    # an array task or a het component was submitted under its job's own id
    submitted_id = re.split(r"[_+]", job_id, maxsplit=1)[0]

    def lookup() -> RecordedOutput | None:
        row = request.dbsession.scalars(
            select(JobSubmission)
            .where(
                JobSubmission.cluster == cluster,
                JobSubmission.username == request.identity.username,
                JobSubmission.job_id == submitted_id,
            )
            # the newest submission of an id wins (ids restart after a controller reset)
            .order_by(JobSubmission.id.desc())
            .limit(1)
        ).first()
        if row is None or row.stdout_pattern is None:
            return None
        return RecordedOutput(
            stdout_pattern=row.stdout_pattern or None,
            stderr_pattern=row.stderr_pattern or None,
            job_name=row.job_name,
            work_dir=row.work_dir,
        )

    return lookup


def _list_arguments(request) -> dict:
    return {
        "since": request.validated["since"],
        "states": request.validated["state"],
        "limit": request.validated["limit"],
    }


@cluster_jobs.get(schema=ListJobsSchema(), validators=(colander_querystring_validator,))
@documented(200, 400, 401, 403, 404, 502, 503, 504, response=JOB_LIST_OUT, tag="jobs")
def list_cluster_jobs(request):
    """The caller's jobs on one cluster since a day (default: the last 7 days), newest first."""
    access = request.cluster_access
    cluster = access.cluster
    jobs = slurm_client(request, access).list_jobs(request.identity.username, **_list_arguments(request))
    return {"cluster": cluster.name, "jobs": with_recorded_names(request, cluster.name, jobs)}


def record_submission(
    request,
    client: SlurmClient,
    cluster: str,
    job_id: str,
    *,
    script_path: str | None = None,
    work_dir: str | None = None,
    name: str | None = None,
) -> None:
    """Record a job that sbatch accepted in the registry, committed at once and on its own.

    The job exists on the cluster whatever happens to this request from here, and its id must reach
    the caller even if the registry fails: a failure is logged, never raised.
    """
    username = request.identity.username
    if script_path is not None:
        row = JobSubmission(script_path=script_path, work_dir=posixpath.dirname(script_path) or "/")
    else:
        row = JobSubmission(work_dir=work_dir, name=name)
    row.cluster = cluster
    row.job_id = job_id
    _record_output(client, row)
    row.username = username
    row.client_addr = request.client_address
    log.info("job %s submitted on %s by %s", job_id, cluster, username)
    try:
        with independent_session(request.registry.hcc_dbsession_factory) as db:
            db.add(row)
    except DBAPIError:
        log.error(
            "job %s on %s by %s (script_path=%r work_dir=%r) is NOT recorded: the registry failed",
            job_id,
            cluster,
            username,
            row.script_path,
            row.work_dir,
        )


@cluster_jobs.post(
    schema=SubmitJobSchema(),
    validators=(colander_body_validator,),
    content_type="application/json",
)
@documented(201, 400, 401, 403, 404, 413, 415, 502, 503, 504, response=SUBMITTED_OUT, tag="jobs")
def submit_job(request):
    """Submit a batch job: a script on the cluster (script_path) or its text (script + work_dir)."""
    access = request.cluster_access
    cluster = access.cluster
    username = request.identity.username
    client = slurm_client(request, access)
    body = request.validated
    # The side effect first, the record after: a failed sbatch leaves no row. Nothing retries a
    # POST, so a job is never submitted twice.
    if "script_path" in body:
        job_id = client.submit_script_path(username, body["script_path"])
        record_submission(request, client, cluster.name, job_id, script_path=body["script_path"])
    else:
        job_id = client.submit_script(username, body["script"], body["work_dir"], name=body.get("name"))
        record_submission(
            request, client, cluster.name, job_id, work_dir=body["work_dir"], name=body.get("name")
        )
    request.response.status = 201
    request.response.location = request.route_url("cluster_job", cluster=cluster.name, job_id=job_id)
    return {"cluster": cluster.name, "id": job_id}


def _record_output(client: SlurmClient, row: JobSubmission) -> None:
    """Keep what slurmctld holds about the new job's output files, for when it forgets the job."""
    try:
        recorded = client.recorded_output(row.job_id)
    except DomainError as exc:
        # the job exists; only its output paths will be unknown once slurmctld forgets it
        log.warning("job %s: its output patterns are not recorded: %s", row.job_id, exc)
        return
    if recorded is not None:
        row.stdout_pattern = recorded.stdout_pattern or ""
        row.stderr_pattern = recorded.stderr_pattern or ""
        row.job_name = recorded.job_name


def _job_id(request) -> str:
    # validated before any command is built: a hostile id never comes near argv
    return validate_job_id(request.matchdict["job_id"])


@cluster_job.get()
@documented(200, 400, 401, 403, 404, 502, 503, 504, response=JOB_DETAIL_OUT, tag="jobs")
def get_job(request):
    """One of the caller's jobs: fields, steps, batch script, output paths and, while RUNNING, usage."""
    access = request.cluster_access
    cluster = access.cluster
    job_id = _job_id(request)
    job = slurm_client(request, access).get_job(
        request.identity.username, job_id, recorded=recorded_output(request, cluster.name, job_id)
    )
    with_recorded_names(request, cluster.name, [job])
    return {"cluster": cluster.name, **job}


@cluster_job.delete()
@documented(204, 400, 401, 403, 404, 409, 502, 503, 504, tag="jobs")
def cancel_job(request):
    """Cancel one of the caller's jobs (409 if it already finished)."""
    access = request.cluster_access
    cluster = access.cluster
    job_id = _job_id(request)
    slurm_client(request, access).cancel_job(request.identity.username, job_id)
    log.info("job %s cancelled on %s by %s", job_id, cluster.name, request.identity.username)
    return no_content()


@all_jobs.get(schema=ListJobsSchema(), validators=(colander_querystring_validator,))
@documented(200, 400, 401, response=FEDERATED_OUT, tag="jobs")
def list_all_jobs(request):
    """The caller's jobs on every cluster at once; a cluster that fails is listed in errors."""
    username = request.identity.username
    arguments = _list_arguments(request)
    errors: list[dict] = []
    clients = {}
    # Built here, not in the workers: the credential comes from this request's session.
    for cluster in request.registry.hcc_clusters:
        try:
            clients[cluster] = slurm_client(request, request.access_to(cluster))
        except DomainError as exc:
            errors.append(cluster_error(cluster.name, exc, "jobs"))
    # sacct and squeue (at once since they share nothing), after a connect if none yet
    lists = {
        c.name: functools.partial(client.list_jobs, username, **arguments) for c, client in clients.items()
    }
    budgets = {c.name: c.settings.connect_timeout + 2 * c.settings.command_timeout for c in clients}
    found, failed = list_everywhere(lists, budgets, request.registry.hcc_fanout)
    jobs: list[dict] = []
    for name, cluster_jobs_found in found.items():
        with_recorded_names(request, name, cluster_jobs_found)
        jobs.extend({"cluster": name, **job} for job in cluster_jobs_found)
    errors.extend(cluster_error(name, exc, "jobs") for name, exc in failed.items())
    jobs = newest_first(jobs)
    if arguments["limit"]:
        jobs = jobs[: arguments["limit"]]
    return {"jobs": jobs, "errors": sorted(errors, key=lambda e: e["cluster"])}
