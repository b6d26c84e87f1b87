"""The seam where the legacy portal's notebook routes meet the notebooks service (issue 11).

Until that service is merged, each call raises NotebooksNotAvailable (501 in the envelope). Wiring
it is this module's change only: the views already pass the request, the portal's label (echoed in
each notebook object as ``cluster``) and the notebook id, and expect the objects documented in
``schemas.JUPYTER_OUT`` (``{id, cluster, username, token, port, pid, startedAt}``, epoch seconds).
"""

from __future__ import annotations

from .errors import NotebooksNotAvailable

_NOT_YET = "notebooks are not available on this service yet"


def list_notebooks(request, label: str) -> list[dict]:
    """The caller's notebooks on the cluster of the URL, each labelled ``label``."""
    raise NotebooksNotAvailable(_NOT_YET)


def start_notebook(request, label: str) -> dict:
    """Start a notebook for the caller on the cluster of the URL; its object, labelled ``label``."""
    raise NotebooksNotAvailable(_NOT_YET)


def stop_notebook(request, notebook_id: str) -> None:
    """Stop one of the caller's notebooks on the cluster of the URL."""
    raise NotebooksNotAvailable(_NOT_YET, field="jupyterId")
