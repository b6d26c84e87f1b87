"""Typed failures of remote (SSH) work, each carrying the HTTP status the API answers with."""

from hcc_federation.errors import ServiceError


class RemoteError(ServiceError):
    """Something went wrong talking to a cluster; ``cluster`` names it.

    The envelope points at the ``cluster`` path parameter, since that is what the client chose.
    Descriptions never contain credentials: they are shown to the client.
    """

    status = 502
    location = "path"
    name = "cluster"

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

    status = 503


class HostKeyRejected(RemoteError):
    """The server's host key is unknown to, or differs from, the configured known_hosts."""

    status = 503

    def __init__(self, cluster: str, detail: str, *, fingerprint: str = ""):
        super().__init__(cluster, detail)
        self.fingerprint = fingerprint


class CredentialsRefused(RemoteError):
    """The cluster refused the user's password, key or certificate."""

    status = 403


class RemoteTimeout(RemoteError):
    """The SSH handshake, the authentication, a free session slot or the command took too long."""

    status = 504


class OutputTooLarge(RemoteError):
    """A command wrote more than the output cap (stdout and stderr together)."""

    status = 502
