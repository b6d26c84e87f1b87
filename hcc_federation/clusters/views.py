"""The clusters of this deployment: their status, partitions and nodes."""

from __future__ import annotations

from cornice import Service

from ..api.docs import documented
from ..files.views import cluster_filesystems
from ..timefmt import JSON_SCHEMA as TIME
from ..timefmt import rfc3339
from .details import cluster_details

clusters = Service(name="clusters", path="/api/v1/clusters", description="The deployment's clusters")
cluster = Service(name="cluster", path="/api/v1/clusters/{cluster}", description="One cluster")

STATUS_PROPERTIES = {
    "name": {"type": "string"},
    "description": {"type": "string"},
    "status": {"type": "string", "enum": ["up", "down", "hostkey_mismatch"]},
    "checked_at": TIME,
}
CLUSTERS_OUT = {
    "type": "object",
    "properties": {
        "clusters": {
            "type": "array",
            "items": {"type": "object", "required": list(STATUS_PROPERTIES), "properties": STATUS_PROPERTIES},
        }
    },
}
CLUSTER_OUT = {
    "type": "object",
    "required": [*STATUS_PROPERTIES, "details_as_of"],
    "properties": {
        **STATUS_PROPERTIES,
        "partitions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "default": {"type": "boolean"},
                    "state": {"type": "string"},
                    "time_limit_seconds": {"type": ["integer", "null"]},
                    "cpus": {"type": "integer"},
                    "node_count": {"type": "integer"},
                    "nodes_by_state": {"type": "object", "additionalProperties": {"type": "integer"}},
                },
            },
        },
        "details_as_of": {
            **TIME,
            "description": "when the partitions, nodes and file systems were read on the cluster: "
            "the answer is kept per caller for hcc.cluster.<name>.detail_cache seconds (default 5)",
        },
        "filesystems": {
            "type": "array",
            "description": "the cluster's named file systems, resolved for the caller",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "path": {"type": "string"}},
            },
        },
        "nodes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "state": {"type": "string"},
                    "responding": {"type": "boolean"},
                    "cpus": {"type": ["integer", "null"]},
                    "memory_mb": {"type": ["integer", "null"]},
                    "partitions": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}


def status_json(cluster, status) -> dict:
    return {
        "name": cluster.name,
        "description": cluster.settings.description,
        "status": status.status,
        "checked_at": rfc3339(status.checked_at),
    }


@clusters.get()
@documented(200, 401, response=CLUSTERS_OUT, tag="clusters")
def list_clusters(request):
    """Every cluster of this deployment with its status (a quick SSH probe, no login, cached briefly)."""
    registry = request.registry.hcc_clusters
    statuses = registry.statuses()
    return {"clusters": [status_json(c, statuses[c.name]) for c in registry]}


@cluster.get()
@documented(200, 401, 403, 404, 502, 503, 504, response=CLUSTER_OUT, tag="clusters")
def get_cluster(request):
    """One cluster: status, partitions, nodes and file systems, as the caller sees them.

    The answer is read (one sinfo as the caller) at most once per hcc.cluster.<name>.detail_cache
    seconds per caller; ``details_as_of`` says when it was read.
    """
    registry = request.registry.hcc_clusters
    # resolved before the cache: an unknown cluster, a missing credential or a busy cluster answer
    # as they would without it
    access = request.cluster_access
    found = access.cluster

    def read() -> dict:
        details = cluster_details(found, access.run)
        details["filesystems"] = cluster_filesystems(request, access)
        # sinfo answered as the caller: no separate probe (a new TCP connection) is needed to say "up"
        registry.record_up(found.name)
        return details

    settings = found.settings
    snapshot = request.registry.hcc_cluster_details.get(
        found.name,
        access.identity.username,
        read,
        # a request that joins another's read waits as long as that read may take: a login, then sinfo
        wait=settings.connect_timeout + settings.command_timeout,
    )
    status = registry.status_as_of(found.name, snapshot.as_of)
    return {**status_json(found, status), **snapshot.value, "details_as_of": rfc3339(snapshot.as_of)}
