"""Clusters: the registry of configured clusters, their details (sinfo), and access to them as the caller.

registry.py and details.py are domain code (no Pyramid); access.py holds the per-request helpers and
views.py the Cornice services. The names below are the package's public face for the other features.
"""

from __future__ import annotations

import atexit

from ..fanout import FanOut
from ..remote import ConnectionPool, load_ca_key
from ..remote.paramiko_compat import check_paramiko_version
from .access import ClusterAccess, access_as, access_to, caller_credential, cluster_access
from .details import DetailsCache
from .registry import (
    Cluster,
    ClusterCommandFailed,
    ClusterRegistry,
    ClusterStatus,
    MissingCredential,
    UnknownCluster,
    identity_for,
)

__all__ = [
    "Cluster",
    "ClusterAccess",
    "ClusterCommandFailed",
    "ClusterRegistry",
    "ClusterStatus",
    "MissingCredential",
    "UnknownCluster",
    "identity_for",
    "includeme",
]


def includeme(config) -> None:
    # the pool relies on paramiko internals checked against one minor version: refuse any other now,
    # with a message, rather than misbehave on the first request that needs them
    check_paramiko_version()
    settings = config.registry.hcc_settings
    pool = ConnectionPool.from_settings(settings)
    # SSH transports end cleanly with the process rather than being cut mid-channel
    atexit.register(pool.close_all)
    config.registry.hcc_pool = pool
    # one bounded pool of threads for all fan-out work, made once (see FanOut.for_clusters for its size)
    fanout = FanOut.for_clusters(settings.clusters)
    atexit.register(fanout.shutdown)
    config.registry.hcc_fanout = fanout
    config.registry.hcc_clusters = ClusterRegistry.from_settings(settings, pool, fanout)
    # a snapshot per (cluster, user) at most: as many as the pool may hold logins (one per user and
    # cluster), so the cache never knows more users than the pool does
    config.registry.hcc_cluster_details = DetailsCache(
        {c.name: c.detail_cache for c in settings.clusters}, max_entries=settings.ssh.max_connections
    )
    # load (and check the mode of) the CA key at start-up, not at the first login
    config.registry.hcc_ca_key = load_ca_key(settings.ssh.ca_key) if settings.ssh.ca_key else None
    # where it sat when .api was included after it: under the API's tweens, just over pyramid_tm
    config.add_tween(
        "hcc_federation.clusters.access.bulkhead_tween_factory",
        under="hcc_federation.api.tweens.body_limit_tween_factory",
    )
    # views reach a cluster only through these (see access.py): one lookup, one decrypt, one slot
    config.add_request_method(caller_credential, "caller_credential", reify=True)
    config.add_request_method(cluster_access, "cluster_access", reify=True)
    config.add_request_method(access_to, "access_to")
    config.add_request_method(access_as, "access_as")
    # the views are Cornice services; .api, included first (see main), has already included Cornice
    config.include("cornice")
    config.scan(".views")
