"""Jupyter notebooks on the clusters: start (batch job or login-node process), watch, stop.

commands.py (scripts and argv), tls.py (certificates, the readiness check through the tunnel) and
service.py (the start/list/get/stop API other features call) never import Pyramid; views.py and
schemas.py are the HTTP side.
"""

from __future__ import annotations

from .service import (
    NotebookStore,
    StartRequest,
    get_notebook,
    list_notebooks,
    refresh_live,
    start_notebook,
    stop_notebook,
)

__all__ = [
    "NotebookStore",
    "StartRequest",
    "get_notebook",
    "includeme",
    "list_notebooks",
    "refresh_live",
    "start_notebook",
    "stop_notebook",
]


def includeme(config) -> None:
    registry = config.registry
    registry.hcc_notebook_store = NotebookStore(
        registry.hcc_dbsession_factory, registry.hcc_settings.auth.secret
    )
    config.include("cornice")
    config.scan(".views")
