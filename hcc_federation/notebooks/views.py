"""Jupyter notebooks on each cluster and on every cluster at once: start, list, read, stop."""

from __future__ import annotations

import functools
import logging

from cornice import Service
from cornice.validators import colander_body_validator

from ..api.docs import documented
from ..api.errors import cluster_error
from ..api.responses import no_content
from ..errors import DomainError
from ..jobs.federated import list_everywhere
from .schemas import FEDERATED_NOTEBOOKS_OUT, NOTEBOOK, NOTEBOOK_LIST_OUT, StartNotebookSchema
from .service import StartRequest, get_notebook, list_notebooks, start_notebook, stop_notebook

log = logging.getLogger(__name__)

cluster_notebooks = Service(
    name="cluster_notebooks",
    path="/api/v1/clusters/{cluster}/notebooks",
    description="The caller's Jupyter notebooks on one cluster",
)
cluster_notebook = Service(
    name="cluster_notebook",
    path="/api/v1/clusters/{cluster}/notebooks/{notebook_id}",
    description="One notebook on one cluster",
)
all_notebooks = Service(
    name="all_notebooks", path="/api/v1/notebooks", description="The caller's notebooks on every cluster"
)


def _sessions(request):
    # the notebook service commits its own short transactions (claims must be visible to other
    # replicas before the server starts, and no row lock is held across SSH)
    return request.registry.hcc_notebook_store


@cluster_notebooks.post(
    schema=StartNotebookSchema(), validators=(colander_body_validator,), content_type="application/json"
)
@documented(201, 400, 401, 403, 404, 409, 413, 415, 429, 502, 503, 504, response=NOTEBOOK, tag="notebooks")
def start(request):
    """Start a Jupyter notebook: answered at once, pending or starting; read it to see it running."""
    access = request.cluster_access
    body = request.validated
    notebook = start_notebook(
        access, _sessions(request), request.identity.username, StartRequest(**body), request.client_address
    )
    request.response.status = 201
    request.response.location = request.route_url(
        "cluster_notebook", cluster=access.cluster.name, notebook_id=notebook["id"]
    )
    return notebook


@cluster_notebooks.get()
@documented(200, 401, 403, 404, 502, 503, 504, response=NOTEBOOK_LIST_OUT, tag="notebooks")
def list_cluster_notebooks(request):
    """The caller's notebooks on one cluster, newest first, live ones brought up to date."""
    access = request.cluster_access
    notebooks = list_notebooks(access, _sessions(request), request.identity.username)
    return {"cluster": access.cluster.name, "notebooks": notebooks}


@cluster_notebook.get()
@documented(200, 401, 403, 404, 502, 503, 504, response=NOTEBOOK, tag="notebooks")
def get(request):
    """One of the caller's notebooks, its state brought up to date (404 for anyone else's)."""
    return get_notebook(
        request.cluster_access,
        _sessions(request),
        request.identity.username,
        request.matchdict["notebook_id"],
    )


@cluster_notebook.delete()
@documented(204, 401, 403, 404, 502, 503, 504, tag="notebooks")
def stop(request):
    """Stop one of the caller's notebooks: the job cancelled or the process ended, its port free."""
    stop_notebook(
        request.cluster_access,
        _sessions(request),
        request.identity.username,
        request.matchdict["notebook_id"],
    )
    return no_content()


@all_notebooks.get()
@documented(200, 401, response=FEDERATED_NOTEBOOKS_OUT, tag="notebooks")
def list_all_notebooks(request):
    """The caller's notebooks on every cluster; a cluster that fails is listed in errors."""
    username = request.identity.username
    sessions = _sessions(request)
    errors: list[dict] = []
    lists = {}
    budgets = {}
    for cluster in request.registry.hcc_clusters:
        if not cluster.settings.notebook_modes:
            continue
        try:
            access = request.access_to(cluster)
        except DomainError as exc:
            errors.append(cluster_error(cluster.name, exc, "notebooks"))
            continue
        lists[cluster.name] = functools.partial(list_notebooks, access, sessions, username)
        budgets[cluster.name] = cluster.settings.connect_timeout + 4 * cluster.settings.command_timeout
    found, failed = list_everywhere(lists, budgets, request.registry.hcc_fanout)
    notebooks = [nb for name in sorted(found) for nb in found[name]]
    notebooks.sort(key=lambda nb: nb["created_at"], reverse=True)
    errors.extend(cluster_error(name, exc, "notebooks") for name, exc in failed.items())
    return {"notebooks": notebooks, "errors": sorted(errors, key=lambda e: e["cluster"])}
