"""What a new session keeps, sealed, so that the service can act for the person on the clusters."""

from __future__ import annotations


def session_credential(registry, username: str, password: str) -> dict | None:
    """The credential dict to seal into a new session.

    The SSH password identity needs the person's password after login, so it is kept, encrypted
    (see auth.crypto). Clusters that use certificates need none; the cluster routing decides that.
    """
    return {"password": password}
