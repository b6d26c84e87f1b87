"""SSH to the clusters: endpoints, identities, a shared connection pool and its typed errors."""

from hcc_federation.remote.endpoint import ClusterEndpoint
from hcc_federation.remote.errors import (
    ClusterUnreachable,
    CredentialsRefused,
    HostKeyRejected,
    OutputTooLarge,
    RemoteError,
    RemoteTimeout,
)
from hcc_federation.remote.identity import (
    CertificateIdentity,
    Identity,
    PasswordIdentity,
    load_ca_key,
    make_certificate_identity,
)
from hcc_federation.remote.pool import ConnectionPool, ProbeResult
from hcc_federation.remote.result import CommandResult

__all__ = [
    "CertificateIdentity",
    "ClusterEndpoint",
    "ClusterUnreachable",
    "CommandResult",
    "ConnectionPool",
    "CredentialsRefused",
    "HostKeyRejected",
    "Identity",
    "OutputTooLarge",
    "PasswordIdentity",
    "ProbeResult",
    "RemoteError",
    "RemoteTimeout",
    "load_ca_key",
    "make_certificate_identity",
]
