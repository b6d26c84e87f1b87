"""Long file operations: copies, moves and deletes that run on the cluster (a Slurm job in a transfer
partition, or detached on the login node) and copies between clusters, tracked with progress.

worker.py (the scripts and their argv), progress.py (the progress file), service.py and crossing.py
never import Pyramid; views.py and schemas.py are the routes.
"""

from __future__ import annotations


def includeme(config) -> None:
    """The operations routes."""
    config.scan(".views")
