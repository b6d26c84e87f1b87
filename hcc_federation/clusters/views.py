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
    "required": list(STATUS_PROPERTIES),
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
    """One cluster: status, partitions, nodes and file systems, as the caller sees them."""
    registry = request.registry.hcc_clusters
    access = request.cluster_access
    found = access.cluster
    details = cluster_details(found, access.run)
    filesystems = cluster_filesystems(request, access)
    # sinfo answered as the caller: no separate probe (a new TCP connection) is needed to say "up"
    return {**status_json(found, registry.record_up(found.name)), **details, "filesystems": filesystems}
