"""Pyramid glue of cluster routing: the pool and registry at start-up, and per-request helpers."""

from __future__ import annotations

import atexit
from collections.abc import Callable, Sequence

from .clusters import Cluster, ClusterRegistry, identity_for
from .remote import CommandResult, ConnectionPool, load_ca_key


def cluster_identity(request, cluster: Cluster):
    """The caller's SSH identity for a cluster, from the credential sealed in the session."""
    session = request.identity
    credential = request.registry.hcc_sessions.credential(session)
    return identity_for(cluster, session.username, credential)


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


def includeme(config) -> None:
    settings = config.registry.hcc_settings
    pool = ConnectionPool(
        max_connections=settings.ssh.max_connections,
        idle_timeout=settings.ssh.idle_timeout,
        max_lifetime=settings.ssh.max_lifetime,
    )
    # SSH transports end cleanly with the process rather than being cut mid-channel
    atexit.register(pool.close_all)
    config.registry.hcc_pool = pool
    config.registry.hcc_clusters = ClusterRegistry(settings.clusters, settings.ssh, pool)
    # load (and check the mode of) the CA key at start-up, not at the first login
    config.registry.hcc_ca_key = load_ca_key(settings.ssh.ca_key) if settings.ssh.ca_key else None
    config.add_request_method(cluster_identity, "cluster_identity")
    config.add_request_method(cluster_runner, "cluster_runner")
    config.add_request_method(cluster_sftp, "cluster_sftp")
