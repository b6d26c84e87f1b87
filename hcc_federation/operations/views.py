"""Long file operations as the caller: start, list (one cluster or all), read, cancel."""

from __future__ import annotations

import logging

from cornice import Service
from cornice.validators import colander_body_validator, colander_querystring_validator
from sqlalchemy import select

from ..api.docs import documented
from ..api.errors import cluster_error
from ..clusters import ClusterAccess
from ..errors import DomainError, InvalidArgument
from ..jobs.federated import list_everywhere
from ..models import FileOperation
from ..models.meta import utcnow
from ..timefmt import rfc3339
from .crossing import start_copy_between
from .errors import OperationFinished, OperationNotFound
from .progress import FINAL_STATES, Progress
from .schemas import FEDERATED_LIST, OPERATION, OPERATION_LIST, CopyBetweenBody, ListQuery, OperationBody
from .service import (
    current_progress,
    mark_cancelled,
    new_operation_id,
    request_cancel,
    start_local,
    sweep,
)

log = logging.getLogger(__name__)

cluster_operations = Service(
    name="cluster_operations",
    path="/api/v1/clusters/{cluster}/operations",
    description="Long copies, moves and deletes on one cluster",
)
cluster_operation = Service(
    name="cluster_operation",
    path="/api/v1/clusters/{cluster}/operations/{id}",
    description="One long file operation",
)
all_operations = Service(
    name="all_operations",
    path="/api/v1/operations",
    description="Operations on every cluster, and copies between them",
)


def operation_json(row: FileOperation) -> dict:
    return {
        "id": row.id,
        "cluster": row.cluster,
        "kind": row.kind,
        "path": row.path,
        "to": row.to_path,
        "to_cluster": row.to_cluster,
        "state": row.state,
        "progress": {
            "bytes_done": row.bytes_done,
            "bytes_total": row.bytes_total,
            "files_done": row.files_done,
            "files_total": row.files_total,
        },
        "route": row.route,
        "runner": row.runner,
        "job_id": row.job_id,
        "created_at": rfc3339(row.created_at),
        "ended_at": rfc3339(row.ended_at),
        "error": row.error,
    }


def _record(request, operation_id: str, access: ClusterAccess, started, **fields) -> FileOperation:
    row = FileOperation(
        id=operation_id,
        username=request.identity.username,
        cluster=access.cluster.name,
        work_dir=started.work_dir,
        runner=started.runner,
        job_id=started.job_id,
        pid=started.pid,
        state="queued",
        created_at=utcnow(),
        **fields,
    )
    request.dbsession.add(row)
    request.dbsession.flush()
    log.info(
        "operation %s (%s %s) started on %s by %s",
        operation_id,
        row.kind,
        row.route,
        row.cluster,
        row.username,
    )
    return row


def _cleanup_timeout(request) -> float:
    return float(request.registry.hcc_settings.files.tree_timeout)


def _apply(row: FileOperation, progress: Progress | None) -> None:
    """What the worker last wrote, into the row; a final state is kept from then on."""
    if progress is None or row.state in FINAL_STATES:
        return
    row.state = progress.state
    for name in ("bytes_done", "bytes_total", "files_done", "files_total"):
        value = getattr(progress, name)
        if value is not None or progress.final:
            setattr(row, name, value if value is not None else getattr(row, name))
    row.error = progress.error if progress.state != "done" else None
    if progress.final:
        row.ended_at = utcnow()


def stale_after(request) -> float:
    """hcc.operations.stale_after: how long a silent worker is trusted before its job or process is
    checked."""
    return float(request.registry.hcc_settings.operations.stale_after)


def sweep_ended(request, row: FileOperation, access: ClusterAccess) -> None:
    """Once the row holds an ended operation's outcome, its folders on the clusters have served."""
    if row.state not in FINAL_STATES or row.swept_at is not None:
        return
    destination = None
    if row.to_cluster:
        try:
            destination = request.access_to(request.registry.hcc_clusters.get(row.to_cluster))
        except DomainError as exc:
            # a destination gone from the configuration, or busy: hcc-cleanup sweeps it later; the
            # outcome is what the caller asked for
            log.info("operation %s: not swept on %s now: %s", row.id, row.to_cluster, exc.description)
            return
    # a partial copy is the worker's to remove; after a cancel or a dead worker it may be left
    partial = row.to_path if row.state != "done" and row.kind != "delete" else None
    if sweep(access, row.id, row.work_dir, _cleanup_timeout(request), destination=destination, to=partial):
        row.swept_at = utcnow()


def refresh(request, row: FileOperation, access: ClusterAccess) -> FileOperation:
    """Read the operation's progress from its cluster, unless it already ended."""
    if row.state in FINAL_STATES:
        return row
    progress = current_progress(
        access, row.id, row.work_dir, row.runner, row.job_id, row.pid, stale_after(request)
    )
    _apply(row, progress)
    sweep_ended(request, row, access)
    return row


def _own_operation(request) -> FileOperation:
    operation_id = request.matchdict["id"]
    cluster = request.cluster_access.cluster.name
    row = None
    if len(operation_id) == 32 and all(c in "0123456789abcdef" for c in operation_id):
        row = request.dbsession.get(FileOperation, operation_id)
    # another user's operation, or one of another cluster, is not there for the caller
    if row is None or row.username != request.identity.username or row.cluster != cluster:
        raise OperationNotFound(f"no operation {operation_id[:64]!r} on cluster {cluster}")
    return row


def _owned_rows(request, cluster: str | None):
    query = request.validated
    stmt = select(FileOperation).where(FileOperation.username == request.identity.username)
    if cluster is not None:
        stmt = stmt.where(FileOperation.cluster == cluster)
    stmt = stmt.order_by(FileOperation.created_at.desc()).limit(query["limit"])
    return list(request.dbsession.scalars(stmt))


def _filtered(rows: list[FileOperation], state: str | None) -> list[dict]:
    return [operation_json(row) for row in rows if state is None or row.state == state]


# ------------------------------------------------------------------------------------------ routes


@cluster_operations.post(
    schema=OperationBody(), validators=(colander_body_validator,), content_type="application/json"
)
@documented(202, 400, 401, 403, 404, 409, 413, 415, 502, 503, 504, response=OPERATION, tag="operations")
def start_operation(request):
    """Start a copy, move or delete that runs on the cluster; answers at once (202) with its id."""
    body = request.validated
    access = request.cluster_access
    operation_id = new_operation_id()
    started = start_local(
        access, operation_id, body["kind"], body["path"], body["to"], _cleanup_timeout(request)
    )
    row = _record(
        request,
        operation_id,
        access,
        started,
        kind=body["kind"],
        path=body["path"],
        to_path=body["to"],
        route="local",
    )
    request.response.status = 202
    request.response.location = request.route_url("cluster_operation", cluster=row.cluster, id=row.id)
    return operation_json(row)


@cluster_operations.get(schema=ListQuery(), validators=(colander_querystring_validator,))
@documented(200, 400, 401, 403, 404, 502, 503, 504, response=OPERATION_LIST, tag="operations")
def list_cluster_operations(request):
    """The caller's operations on one cluster, newest first, each read from the cluster if still running."""
    access = request.cluster_access
    rows = [refresh(request, row, access) for row in _owned_rows(request, access.cluster.name)]
    return {"cluster": access.cluster.name, "operations": _filtered(rows, request.validated["state"])}


@cluster_operation.get()
@documented(200, 400, 401, 403, 404, 502, 503, 504, response=OPERATION, tag="operations")
def get_operation(request):
    """One of the caller's operations, with its progress read from the cluster."""
    row = _own_operation(request)
    return operation_json(refresh(request, row, request.cluster_access))


@cluster_operation.delete()
@documented(200, 400, 401, 403, 404, 409, 502, 503, 504, response=OPERATION, tag="operations")
def cancel_operation(request):
    """Cancel: the job or process ends, a partial copy is removed, the state is cancelled (409: it ended)."""
    row = _own_operation(request)
    access = request.cluster_access
    if row.state in FINAL_STATES:
        raise OperationFinished(f"the operation already ended ({row.state})")
    try:
        last = request_cancel(access, row.work_dir, row.runner, row.job_id, row.pid)
    except OperationFinished:
        refresh(request, row, access)
        raise
    if last is not None and last.state == "done":
        _apply(row, last)
        raise OperationFinished("the operation ended (done) before it could be cancelled")
    mark_cancelled(access, row.work_dir, last)
    _apply(row, Progress(state="cancelled", error="cancelled"))
    # the worker removes its partial copy itself; sweeping also covers one stopped before it could
    sweep_ended(request, row, access)
    log.info("operation %s cancelled on %s by %s", row.id, row.cluster, row.username)
    return operation_json(row)


def crossing_options(request, source: ClusterAccess, destination: ClusterAccess) -> dict:
    """How a copy between clusters is made: the CA that signs a push's certificate and for how long
    (hcc.operations.certificate_ttl), and the timeouts of its clean-up and of a relay's streams."""
    return {
        "ca_key": request.registry.hcc_ca_key,
        "certificate_ttl": request.registry.hcc_settings.operations.certificate_ttl,
        "cleanup_timeout": _cleanup_timeout(request),
        "relay_timeout": max(
            source.cluster.settings.command_timeout, destination.cluster.settings.command_timeout
        ),
    }


@all_operations.post(
    schema=CopyBetweenBody(), validators=(colander_body_validator,), content_type="application/json"
)
@documented(202, 400, 401, 403, 404, 409, 413, 415, 502, 503, 504, response=OPERATION, tag="operations")
def copy_between_clusters(request):
    """Copy a file or tree from one cluster to another (route says how: push or relay); answers at once."""
    body = request.validated
    clusters = request.registry.hcc_clusters
    source_name, destination_name = body["from"]["cluster"], body["to"]["cluster"]
    source = request.access_to(clusters.get(source_name))
    if destination_name == source_name:
        raise InvalidArgument(
            "both ends are on one cluster: use POST /api/v1/clusters/{cluster}/operations", field="to"
        )
    destination = request.access_to(clusters.get(destination_name))
    operation_id = new_operation_id()
    started, route = start_copy_between(
        source,
        destination,
        operation_id,
        body["from"]["path"],
        body["to"]["path"],
        **crossing_options(request, source, destination),
    )
    row = _record(
        request,
        operation_id,
        source,
        started,
        kind="copy",
        path=body["from"]["path"],
        to_cluster=destination_name,
        to_path=body["to"]["path"],
        route=route,
    )
    request.response.status = 202
    request.response.location = request.route_url("cluster_operation", cluster=row.cluster, id=row.id)
    return operation_json(row)


@all_operations.get(schema=ListQuery(), validators=(colander_querystring_validator,))
@documented(200, 400, 401, response=FEDERATED_LIST, tag="operations")
def list_all_operations(request):
    """The caller's operations on every cluster, newest first; a cluster that fails is listed in errors."""
    rows = _owned_rows(request, None)
    clusters = request.registry.hcc_clusters
    errors: list[dict] = []
    pending: dict[str, list[FileOperation]] = {}
    for row in rows:
        if row.state not in FINAL_STATES:
            pending.setdefault(row.cluster, []).append(row)
    stale = stale_after(request)
    reads = {}
    budgets = {}
    for name, running in pending.items():
        try:
            cluster = clusters.get(name)
            access = request.access_to(cluster)
        except DomainError as exc:
            errors.append(cluster_error(name, exc, "operations"))
            continue

        def read(access=access, running=running):
            return [
                current_progress(access, r.id, r.work_dir, r.runner, r.job_id, r.pid, stale) for r in running
            ]

        reads[name] = read
        budgets[name] = cluster.settings.connect_timeout + 3 * cluster.settings.command_timeout
    # the rows are written here, in the request's thread: the database session is not shared
    found, failed = list_everywhere(reads, budgets, request.registry.hcc_fanout)
    for name, progresses in found.items():
        for row, progress in zip(pending[name], progresses, strict=True):
            _apply(row, progress)
            sweep_ended(request, row, request.access_to(clusters.get(name)))
    errors.extend(cluster_error(name, exc, "operations") for name, exc in failed.items())
    return {
        "operations": _filtered(rows, request.validated["state"]),
        "errors": sorted(errors, key=lambda e: e["cluster"]),
    }
