"""One cluster as one caller, for one request: the cluster, the caller's SSH identity and its bulkhead slot.

Views get everything remote from ``request.cluster_access`` (the cluster named in the route) or
``request.access_to(cluster)`` (the federated job list, which visits every cluster): the cluster is
looked up once (one 404), the session's sealed credential is opened once per request, the cluster's
bulkhead slot is taken once, and ``run``/``sftp``/``stream`` act as the caller. No view touches the
pool. A download link, which acts as the link's maker rather than the caller, builds the same object
from the identity it holds (``access_as``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import paramiko

from ..bulkhead import ReleasingBody, release_all
from ..remote import CommandResult, ConnectionPool, Identity
from .registry import Cluster, identity_for

# run(argv, stdin=None, timeout=None) as the caller on the cluster's login node
Runner = Callable[..., CommandResult]


class ClusterAccess:
    """A cluster as one identity: commands, SFTP and streamed exec channels through the shared pool.

    Pyramid-free: the request helpers below build it, domain code and tests can build it directly.
    """

    def __init__(self, pool: ConnectionPool, cluster: Cluster, identity: Identity) -> None:
        self.cluster = cluster
        self.identity = identity
        self._pool = pool

    def run(
        self, argv: Sequence[str], stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        """Run argv (timeout: the cluster's command_timeout unless given) and collect its output."""
        return self._pool.run(self.cluster.endpoint, self.identity, argv, stdin=stdin, timeout=timeout)

    def runner(self, timeout: float) -> Runner:
        """``run`` with another default timeout (e.g. hcc.files.tree_timeout for whole trees)."""
        return lambda argv, stdin=None: self.run(argv, stdin=stdin, timeout=timeout)

    def sftp(self) -> AbstractContextManager[paramiko.SFTPClient]:
        """An SFTP client on a pooled channel, for the ``with`` block."""
        return self._pool.open_sftp(self.cluster.endpoint, self.identity)

    def stream(
        self, argv: Sequence[str], *, stdin: bool = False, timeout: float | None = None
    ) -> AbstractContextManager[paramiko.Channel]:
        """An exec channel running argv, for reading its stdout as it comes (downloads); with
        ``stdin``, also for writing to it (a relay between clusters)."""
        return self._pool.exec_channel(
            self.cluster.endpoint, self.identity, argv, stdin=stdin, timeout=timeout
        )

    def open_tunnel(
        self, host: str, port: int, timeout: float | None = None
    ) -> AbstractContextManager[paramiko.Channel]:
        """A TCP connection to host:port made by the cluster's login node (direct-tcpip), as the caller."""
        return self._pool.open_tunnel(self.cluster.endpoint, self.identity, host, port, timeout=timeout)


def hold_cluster(request, cluster: Cluster) -> None:
    """Take one of the cluster's request slots (its bulkhead) for the rest of this request.

    Raises ClusterBusy (503) when the cluster's share is in use. Idempotent per request; the
    bulkhead tween gives the slot back when the response is made or, for a streamed body, when
    the server closes it.
    """
    holds = request.__dict__.setdefault("hcc_cluster_holds", {})
    if cluster.name in holds:
        return
    bulkhead = request.registry.hcc_clusters.bulkhead(cluster.name)
    bulkhead.acquire()
    holds[cluster.name] = bulkhead


def caller_credential(request) -> dict | None:
    """The credential sealed in the caller's session, opened once per request (reified)."""
    return request.registry.hcc_sessions.credential(request.identity)


def access_as(request, cluster: Cluster, identity: Identity) -> ClusterAccess:
    """``cluster`` as ``identity`` for this request, holding the cluster's bulkhead slot."""
    hold_cluster(request, cluster)
    return ClusterAccess(request.registry.hcc_pool, cluster, identity)


def access_to(request, cluster: Cluster) -> ClusterAccess:
    """``cluster`` as the caller; built once per cluster and request."""
    built = request.__dict__.setdefault("hcc_cluster_access", {})
    access = built.get(cluster.name)
    if access is None:
        identity = identity_for(cluster, request.identity.username, request.caller_credential)
        access = built[cluster.name] = access_as(request, cluster, identity)
    return access


def cluster_access(request) -> ClusterAccess:
    """The cluster of the route's ``{cluster}`` as the caller (reified: one lookup, one 404)."""
    return request.access_to(request.registry.hcc_clusters.get(request.matchdict["cluster"]))


def bulkhead_tween_factory(handler, registry):
    """Gives back the cluster slots a request took: when it ends, on every path, or when its
    streamed body is closed (a download holds its cluster until its last byte)."""

    def bulkhead_tween(request):
        holds = request.__dict__.setdefault("hcc_cluster_holds", {})
        try:
            response = handler(request)
        except BaseException:
            release_all(list(holds.values()))
            raise
        if holds:
            bulkheads = list(holds.values())
            holds.clear()
            if isinstance(response.app_iter, list | tuple):
                release_all(bulkheads)
            else:
                length = response.content_length
                response.app_iter = ReleasingBody(response.app_iter, bulkheads)
                response.content_length = length
        return response

    return bulkhead_tween
