"""What a new session keeps, sealed, so that the service can act for the person on the clusters."""

from __future__ import annotations

import secrets
from datetime import timedelta

from ..remote import make_certificate_identity


def session_credential(registry, username: str, password: str) -> dict | None:
    """The credential dict to seal into a new session (see auth.crypto), or None.

    Clusters with the password identity need the person's password after login, so it is kept
    only if one of them does. Clusters with the certificate identity get a key pair made for this
    session and a user certificate signed by the service's CA, valid no longer than the session;
    then no password is kept for them.
    """
    clusters = registry.hcc_clusters
    credential: dict = {}
    if clusters.uses("password"):
        credential["password"] = password
    if clusters.uses("certificate"):
        max_age = registry.hcc_settings.auth.max_age
        identity = make_certificate_identity(
            registry.hcc_ca_key,
            username,
            valid_for=timedelta(seconds=max_age),
            key_id=f"hcc-federation:{username}:{secrets.token_hex(8)}",
        )
        credential["ssh_key"] = identity.private_key_openssh.decode()
        credential["ssh_cert"] = identity.certificate
    return credential or None
