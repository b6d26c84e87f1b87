"""Typed failures of remote (SSH) work: what went wrong with which cluster."""

from hcc_federation.errors import DomainError


class RemoteError(DomainError):
    """Something went wrong talking to a cluster; ``cluster`` names it.

    Descriptions never contain credentials: they are shown to the client.
    """

    field = "cluster"

    def __init__(self, cluster: str, detail: str):
        super().__init__(f"cluster {cluster!r}: {detail}")
        self.cluster = cluster
        self.detail = detail

    def __reduce__(self):  # type: ignore[override]
        # copy and pickle rebuild from (cluster, detail), not from the one-string message; the pool
        # hands a copy of a failed connect's error to every thread that queued behind it
        return (type(self), (self.cluster, self.detail), self.__dict__)


class ClusterUnreachable(RemoteError):
    """TCP refused or timed out, the SSH handshake failed, or the transport died under us."""


class HostKeyRejected(RemoteError):
    """The server's host key is unknown to, or differs from, the configured known_hosts."""

    def __init__(self, cluster: str, detail: str, *, fingerprint: str = ""):
        super().__init__(cluster, detail)
        self.fingerprint = fingerprint


class CredentialsRefused(RemoteError):
    """The cluster refused the user's password, key or certificate."""


class RemoteTimeout(RemoteError):
    """The SSH handshake, the authentication, a free session slot or the command took too long."""


class OutputTooLarge(RemoteError):
    """A command wrote more than the output cap (stdout and stderr together)."""
