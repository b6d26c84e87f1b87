"""Slurm jobs on each cluster, and on every cluster at once: list, detail, submit, cancel."""

from __future__ import annotations

import logging
import posixpath
import re
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, date, datetime, timedelta

import colander
from cornice import Service
from cornice.validators import colander_body_validator, colander_querystring_validator
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from .. import slurm
from ..auth.policy import AUTHENTICATED
from ..db import independent_session
from ..errors import ServiceError
from ..models import JobSubmission
from .docs import documented
from .responses import no_content
from .schemas import PathString, StrictSchema, StrictString

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

# Below the API's request body limit (hcc.api.max_body_bytes, 1 MiB by default, which answers 413
# first) and well below Slurm's own max_script_size (4 MiB): a batch script is a page of shell.
MAX_SCRIPT_BYTES = 1024 * 1024
MAX_PATH_LENGTH = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# The accounting database starts at the epoch; an earlier day is a client's mistake.
EARLIEST_SINCE = date(1970, 1, 2)
# The time zone farthest ahead of UTC (Kiribati's Line Islands): its today is the latest anywhere.
LATEST_UTC_OFFSET = timedelta(hours=14)
# A federated list waits for a cluster this long beyond its own connect and command timeouts.
FEDERATED_GRACE_SECONDS = 2.0


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------


class IsoDate(colander.SchemaType):
    """Exactly ``YYYY-MM-DD`` (colander.Date also takes datetimes and other ISO 8601 forms)."""

    json_schema = {"format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}

    def deserialize(self, node, cstruct):
        if cstruct is colander.null:
            return colander.null
        if not isinstance(cstruct, str) or not _DATE.fullmatch(cstruct):
            raise colander.Invalid(node, "must be a date YYYY-MM-DD")
        try:
            value = date.fromisoformat(cstruct)
        except ValueError:
            raise colander.Invalid(node, f"{cstruct} is not a valid date") from None
        if value < EARLIEST_SINCE:
            raise colander.Invalid(node, f"must not be before {EARLIEST_SINCE.isoformat()}")
        # A day that is today nowhere on Earth yet is a client's mistake (a mistyped year), not a
        # filter that matches nothing: 400. A day that is today somewhere (up to UTC+14) is
        # accepted, and where it has not begun on the cluster the history is simply empty.
        latest = (datetime.now(UTC) + LATEST_UTC_OFFSET).date()
        if value > latest:
            raise colander.Invalid(node, f"must not be in the future (after {latest.isoformat()})")
        return value

    def serialize(self, node, appstruct):
        return colander.null if appstruct is colander.null else appstruct.isoformat()


class StateList(colander.SchemaType):
    """A comma-separated list of Slurm job states, case-insensitive: ``RUNNING,pending``."""

    # the documented form, upper case (lower case and spaces are accepted too)
    json_schema = {
        "maxLength": 1000,
        "pattern": "^({0})(,({0}))*$".format("|".join(sorted(slurm.JOB_STATES))),
    }

    def deserialize(self, node, cstruct):
        if cstruct is colander.null:
            return colander.null
        # a repeated query key arrives as a list: one comma list is the documented form
        if not isinstance(cstruct, str):
            raise colander.Invalid(node, "must be one comma-separated list of job states")
        if len(cstruct) > 1000:
            raise colander.Invalid(node, "too long")
        names = [part.strip().upper() for part in cstruct.split(",")]
        names = [name for name in names if name]
        if not names:
            raise colander.Invalid(node, "must name at least one job state")
        unknown = sorted({name for name in names if name not in slurm.JOB_STATES})
        if unknown:
            known = ", ".join(sorted(slurm.JOB_STATES))
            raise colander.Invalid(
                node, f"unknown job state {', '.join(unknown)[:200]}; expected some of {known}"
            )
        return sorted(set(names))

    def serialize(self, node, appstruct):
        return colander.null if appstruct is colander.null else ",".join(appstruct)


class ListJobsSchema(StrictSchema):
    since = colander.SchemaNode(
        IsoDate(),
        missing=None,
        description=f"jobs since this day (YYYY-MM-DD); default: {slurm.DEFAULT_SINCE_DAYS} days ago",
    )
    state = colander.SchemaNode(
        StateList(), missing=None, description="only these states, comma-separated (RUNNING,PENDING)"
    )
    limit = colander.SchemaNode(
        colander.Int(),
        missing=None,
        validator=colander.Range(1, slurm.MAX_LIMIT),
        description=f"at most this many jobs, newest first (1 to {slurm.MAX_LIMIT})",
    )


def _absolute_path(node, value: str) -> None:
    if not value.startswith("/"):
        raise colander.Invalid(node, "must be an absolute path")
    if len(value) > MAX_PATH_LENGTH:
        raise colander.Invalid(node, f"must be at most {MAX_PATH_LENGTH} characters")
    # No NUL can reach argv, and a newline or escape in a path would forge lines in logs; such
    # paths exist but are not worth that: they are refused rather than passed on.
    if _CONTROL.search(value):
        raise colander.Invalid(node, "must not contain control characters")


def _script_text(node, value: str) -> None:
    if not value.strip():
        raise colander.Invalid(node, "must not be empty")
    if "\x00" in value:
        raise colander.Invalid(node, "must not contain NUL characters")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_SCRIPT_BYTES:
        raise colander.Invalid(node, f"must be at most {MAX_SCRIPT_BYTES} bytes")


def _job_name(node, value: str) -> None:
    if len(value) > slurm.MAX_NAME_LENGTH or _CONTROL.search(value):
        raise colander.Invalid(
            node, f"must be 1 to {slurm.MAX_NAME_LENGTH} characters without control characters"
        )


class SubmitJobSchema(StrictSchema):
    script_path = colander.SchemaNode(
        PathString(),
        missing=colander.drop,
        validator=_absolute_path,
        description="a script on the cluster; sbatch runs it in its own directory",
    )
    script = colander.SchemaNode(
        StrictString(),
        missing=colander.drop,
        validator=_script_text,
        description="the script's text (sent to sbatch on stdin); needs work_dir",
    )
    work_dir = colander.SchemaNode(
        PathString(),
        missing=colander.drop,
        validator=_absolute_path,
        description="where the inline script runs",
    )
    name = colander.SchemaNode(
        StrictString(), missing=colander.drop, validator=_job_name, description="the inline script's job name"
    )

    def validator(self, node, value):
        # Each way of submitting takes its own fields; anything else is refused, not ignored.
        error = colander.Invalid(node)
        if ("script_path" in value) == ("script" in value):
            error["script"] = "give either script_path or script, not both or neither"
        elif "script_path" in value:
            for field in ("work_dir", "name"):
                if field in value:
                    error[field] = (
                        "only with script (a script_path runs in its own directory, under its own name)"
                    )
        elif "work_dir" not in value:
            error["work_dir"] = "required with script"
        if error.children:
            raise error


# --------------------------------------------------------------------------------------------
# Response documents (for the OpenAPI document)
# --------------------------------------------------------------------------------------------

_STRING = {"type": ["string", "null"]}
_INT = {"type": ["integer", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
JOB_PROPERTIES = {
    "id": {"type": "string"},
    "name": {"type": "string"},
    "state": {"type": "string", "enum": sorted(slurm.JOB_STATES)},
    "reason": _STRING,
    "partition": _STRING,
    "account": _STRING,
    "user": _STRING,
    "submit_time": _TIME,
    "start_time": _TIME,
    "end_time": _TIME,
    "elapsed_seconds": {"type": "integer"},
    "time_limit_seconds": _INT,
    "node_count": _INT,
    "nodes": _STRING,
    "cpus": _INT,
    "memory": {**_INT, "description": "requested memory, MiB"},
    "work_dir": _STRING,
    "exit_code": {**_STRING, "description": "exit:signal, once finished"},
}
CLUSTER_ERROR = {
    "type": "object",
    "properties": {
        "cluster": {"type": "string"},
        "status": {"type": "integer"},
        "description": {"type": "string"},
    },
}
JOB_LIST_OUT = {
    "type": "object",
    "properties": {
        "cluster": {"type": "string"},
        "jobs": {"type": "array", "items": {"type": "object", "properties": JOB_PROPERTIES}},
    },
}
FEDERATED_OUT = {
    "type": "object",
    "properties": {
        "jobs": {
            "type": "array",
            "items": {"type": "object", "properties": {"cluster": {"type": "string"}, **JOB_PROPERTIES}},
        },
        "errors": {"type": "array", "items": CLUSTER_ERROR},
    },
}
PROCESS = {
    "type": "object",
    "properties": {
        "pid": {"type": "integer"},
        "cpu_percent": {"type": "number"},
        "rss_bytes": {"type": "integer"},
        "elapsed_seconds": {"type": ["number", "null"]},
        "command": {"type": "string"},
    },
}
USAGE = {
    "type": ["object", "null"],
    "description": "live usage of a RUNNING job",
    "properties": {
        "sampled_at": {"type": "string", "format": "date-time"},
        "nodes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "node": _STRING,
                    "scope": {"type": "string", "enum": ["job", "user"]},
                    "cpu_percent": {"type": "number"},
                    "rss_bytes": {"type": "integer"},
                    "processes": {"type": "array", "items": PROCESS},
                },
            },
        },
        "steps": {"type": "array", "items": {"type": "object"}},
    },
}
JOB_DETAIL_OUT = {
    "type": "object",
    "properties": {
        "cluster": {"type": "string"},
        **JOB_PROPERTIES,
        "steps": {"type": "array", "items": {"type": "object"}},
        "script": {**_STRING, "description": "the batch script, while slurmctld keeps it"},
        "usage": USAGE,
    },
}
SUBMITTED_OUT = {"type": "object", "properties": {"cluster": {"type": "string"}, "id": {"type": "string"}}}


# --------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------


def slurm_client(request, cluster) -> slurm.SlurmClient:
    """Slurm on ``cluster`` as the caller, each command bounded by the cluster's command timeout."""
    return slurm.SlurmClient(request.cluster_runner(cluster), timeout=cluster.settings.command_timeout)


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
        slurm.restore_recorded_names(jobs, {job_id: name for job_id, name in rows})
    return jobs


def _list_arguments(request) -> dict:
    return {
        "since": request.validated["since"],
        "states": request.validated["state"],
        "limit": request.validated["limit"],
    }


@cluster_jobs.get(
    permission=AUTHENTICATED, schema=ListJobsSchema(), validators=(colander_querystring_validator,)
)
@documented(200, 400, 401, 403, 404, 502, 503, 504, response=JOB_LIST_OUT, tag="jobs")
def list_cluster_jobs(request):
    """The caller's jobs on one cluster since a day (default: the last 7 days), newest first."""
    cluster = request.registry.hcc_clusters.get(request.matchdict["cluster"])
    jobs = slurm_client(request, cluster).list_jobs(request.identity.username, **_list_arguments(request))
    return {"cluster": cluster.name, "jobs": with_recorded_names(request, cluster.name, jobs)}


@cluster_jobs.post(
    permission=AUTHENTICATED,
    schema=SubmitJobSchema(),
    validators=(colander_body_validator,),
    content_type="application/json",
)
@documented(201, 400, 401, 403, 404, 413, 415, 502, 503, 504, response=SUBMITTED_OUT, tag="jobs")
def submit_job(request):
    """Submit a batch job: a script on the cluster (script_path) or its text (script + work_dir)."""
    cluster = request.registry.hcc_clusters.get(request.matchdict["cluster"])
    username = request.identity.username
    client = slurm_client(request, cluster)
    body = request.validated
    # The side effect first, the record after: a failed sbatch leaves no row. Nothing retries a
    # POST, so a job is never submitted twice.
    if "script_path" in body:
        job_id = client.submit_script_path(username, body["script_path"])
        row = JobSubmission(
            script_path=body["script_path"], work_dir=posixpath.dirname(body["script_path"]) or "/"
        )
    else:
        job_id = client.submit_script(username, body["script"], body["work_dir"], name=body.get("name"))
        row = JobSubmission(work_dir=body["work_dir"], name=body.get("name"))
    row.cluster = cluster.name
    row.job_id = job_id
    row.username = username
    row.client_addr = request.client_address
    log.info("job %s submitted on %s by %s", job_id, cluster.name, username)
    try:
        # committed at once and on its own: the job exists on the cluster whatever happens to
        # this request from here, and its id must reach the caller even if the registry fails
        with independent_session(request.registry.hcc_dbsession_factory) as db:
            db.add(row)
    except DBAPIError:
        log.error(
            "job %s on %s by %s (script_path=%r work_dir=%r) is NOT recorded: the registry failed",
            job_id,
            cluster.name,
            username,
            row.script_path,
            row.work_dir,
        )
    request.response.status = 201
    request.response.location = request.route_url("cluster_job", cluster=cluster.name, job_id=job_id)
    return {"cluster": cluster.name, "id": job_id}


def _job_id(request) -> str:
    # validated before a runner is even built: a hostile id never comes near argv
    return slurm.validate_job_id(request.matchdict["job_id"])


@cluster_job.get(permission=AUTHENTICATED)
@documented(200, 400, 401, 403, 404, 502, 503, 504, response=JOB_DETAIL_OUT, tag="jobs")
def get_job(request):
    """One of the caller's jobs: its fields, steps, batch script and, while RUNNING, live usage per node."""
    cluster = request.registry.hcc_clusters.get(request.matchdict["cluster"])
    job_id = _job_id(request)
    job = slurm_client(request, cluster).get_job(request.identity.username, job_id)
    with_recorded_names(request, cluster.name, [job])
    return {"cluster": cluster.name, **job}


@cluster_job.delete(permission=AUTHENTICATED)
@documented(204, 400, 401, 403, 404, 409, 502, 503, 504, tag="jobs")
def cancel_job(request):
    """Cancel one of the caller's jobs (409 if it already finished)."""
    cluster = request.registry.hcc_clusters.get(request.matchdict["cluster"])
    job_id = _job_id(request)
    slurm_client(request, cluster).cancel_job(request.identity.username, job_id)
    log.info("job %s cancelled on %s by %s", job_id, cluster.name, request.identity.username)
    return no_content()


def _cluster_error(name: str, exc: BaseException) -> dict:
    if isinstance(exc, ServiceError):
        return {"cluster": name, "status": exc.status, "description": exc.description}
    log.error("listing jobs on %s failed", name, exc_info=exc)
    return {"cluster": name, "status": 500, "description": "internal error while listing this cluster's jobs"}


@all_jobs.get(permission=AUTHENTICATED, schema=ListJobsSchema(), validators=(colander_querystring_validator,))
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
            clients[cluster] = slurm_client(request, cluster)
        except ServiceError as exc:
            errors.append(_cluster_error(cluster.name, exc))
    jobs: list[dict] = []
    if clients:
        # One thread per cluster for this request alone: a slow cluster costs its own timeout,
        # never a queue behind other requests; shutdown(wait=False) leaves a late one to finish
        # on its own (its command timeout ends it) while this request answers.
        executor = ThreadPoolExecutor(max_workers=len(clients), thread_name_prefix="hcc-jobs")
        try:
            started = time.monotonic()
            futures = {
                cluster: executor.submit(client.list_jobs, username, **arguments)
                for cluster, client in clients.items()
            }
            for cluster, future in futures.items():
                # sacct and squeue (at once since they share nothing), after a connect if none yet
                budget = cluster.settings.connect_timeout + 2 * cluster.settings.command_timeout
                remaining = budget + FEDERATED_GRACE_SECONDS - (time.monotonic() - started)
                try:
                    found = future.result(timeout=max(0, remaining))
                    with_recorded_names(request, cluster.name, found)
                    jobs.extend({"cluster": cluster.name, **job} for job in found)
                except FutureTimeout:
                    errors.append(
                        {
                            "cluster": cluster.name,
                            "status": 504,
                            "description": f"no answer within {budget:g} s",
                        }
                    )
                except Exception as exc:  # one cluster's failure is its entry, never the whole answer's
                    errors.append(_cluster_error(cluster.name, exc))
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
    jobs = slurm.newest_first(jobs)
    if arguments["limit"]:
        jobs = jobs[: arguments["limit"]]
    return {"jobs": jobs, "errors": sorted(errors, key=lambda e: e["cluster"])}
