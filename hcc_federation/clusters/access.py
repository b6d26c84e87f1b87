"""Per-request access to a cluster as the caller: identity, runner, SFTP, and the cluster's bulkhead."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..bulkhead import ReleasingBody, release_all
from ..remote import CommandResult
from .registry import Cluster, identity_for


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


def cluster_identity(request, cluster: Cluster):
    """The caller's SSH identity for a cluster, from the credential sealed in the session.

    Every use of a cluster for a caller starts here (runner, SFTP, downloads), so the cluster's
    bulkhead is taken here too.
    """
    session = request.identity
    credential = request.registry.hcc_sessions.credential(session)
    identity = identity_for(cluster, session.username, credential)
    hold_cluster(request, cluster)
    return identity


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


def cluster_runner(request, cluster: Cluster) -> Callable[..., CommandResult]:
    """run(argv, stdin=None, timeout=None) as the caller on the cluster's login node."""
    identity = cluster_identity(request, cluster)
    pool = request.registry.hcc_pool

    def run(argv: Sequence[str], stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        return pool.run(cluster.endpoint, identity, argv, stdin=stdin, timeout=timeout)

    return run


def cluster_sftp(request, cluster: Cluster):
    """A context manager yielding an SFTP client as the caller on the cluster (a pooled channel)."""
    return request.registry.hcc_pool.open_sftp(cluster.endpoint, cluster_identity(request, cluster))
