"""The legacy portal's notebooks: the notebooks service's calls, each notebook in the portal's shape.

Every rule (modes, ports, caps, readiness, whose notebook it is) is the notebooks service's; this
module only names the portal's label and turns a notebook into ``{id, cluster, username, token,
port, pid, startedAt}`` (``schemas.JUPYTER_OUT``). No Pyramid: the views pass the cluster access,
the store and the caller's name.
"""

from __future__ import annotations

from typing import Any

from ..clusters.access import ClusterAccess
from ..models import Notebook
from ..models.meta import as_utc
from ..notebooks import NotebookStore, StartRequest
from ..notebooks import list_notebooks as _list
from ..notebooks import start_notebook as _start
from ..notebooks import stop_notebook as _stop
from ..notebooks.service import LIVE_STATES
from ..settings import ClusterSettings


def _shown_as(label: str):
    """The portal's notebook object, labelled ``label``; None for one that has ended (the old
    backend forgot a notebook once stopped, and the portal has no field to say it ended)."""

    def show(cs: ClusterSettings, nb: Notebook, store: NotebookStore) -> dict[str, Any] | None:
        if nb.state not in LIVE_STATES:
            return None
        # the old backend's startedAt was when it launched the server: the request's time until the
        # server answers, then the time it did
        started = nb.started_at or nb.created_at
        return {
            "id": nb.id,
            "cluster": label,
            "username": nb.username,
            "token": store.open(nb.token),
            "port": nb.port,
            "pid": nb.pid if nb.mode == "login" else None,
            "startedAt": as_utc(started).timestamp(),
        }

    return show


def list_jupyters(access: ClusterAccess, store: NotebookStore, username: str, label: str) -> list[dict]:
    """The person's live notebooks on the cluster of ``access``, newest first, each labelled ``label``."""
    shown = _list(access, store, username, shown_as=_shown_as(label))
    return [nb for nb in shown if nb is not None]


def start_jupyter(
    access: ClusterAccess, store: NotebookStore, username: str, label: str, client_addr: str = ""
) -> dict:
    """Start a notebook in the cluster's default mode, with its defaults; its object, labelled ``label``."""
    return _start(access, store, username, StartRequest(), client_addr, shown_as=_shown_as(label))


def stop_jupyter(access: ClusterAccess, store: NotebookStore, username: str, notebook_id: str) -> None:
    """Stop one of the person's notebooks (NotebookNotFound for anyone else's, as in /api/v1)."""
    _stop(access, store, username, notebook_id)
