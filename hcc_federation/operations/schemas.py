"""Request and response schemas of the operations routes."""

from __future__ import annotations

import colander

from ..api.schemas import PathString, StrictSchema, StrictString
from ..files import MAX_PATH_BYTES
from ..timefmt import JSON_SCHEMA as TIME
from ..timefmt import nullable
from .progress import KINDS, STATES


def _path_node(name: str, description: str, missing=colander.required) -> colander.SchemaNode:
    return colander.SchemaNode(
        PathString(),
        name=name,
        missing=missing,
        validator=colander.Length(min=1, max=MAX_PATH_BYTES),
        description=description,
    )


class OperationBody(StrictSchema):
    kind = colander.SchemaNode(StrictString(), validator=colander.OneOf(KINDS))
    path = _path_node("path", "the absolute path of what is copied, moved or deleted")
    to = _path_node("to", "copy and move: the new absolute path; it must not exist", missing=None)


class Endpoint(StrictSchema):
    cluster = colander.SchemaNode(StrictString(), validator=colander.Length(min=1, max=32))
    path = _path_node("path", "an absolute path on that cluster")


class CopyBetweenBody(StrictSchema):
    kind = colander.SchemaNode(StrictString(), validator=colander.OneOf(("copy",)))
    source = Endpoint(name="from", description="what is copied")
    to = Endpoint(description="where the copy goes; the path must not exist")


class ListQuery(StrictSchema):
    state = colander.SchemaNode(
        StrictString(),
        missing=None,
        validator=colander.OneOf(STATES),
        description="only operations in this state",
    )
    limit = colander.SchemaNode(colander.Integer(), missing=100, validator=colander.Range(min=1, max=1000))


COUNT = {"type": ["integer", "null"], "minimum": 0}
OPERATION = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "id",
        "cluster",
        "kind",
        "path",
        "to",
        "to_cluster",
        "state",
        "progress",
        "route",
        "runner",
        "job_id",
        "created_at",
        "ended_at",
        "error",
    ],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "cluster": {"type": "string", "description": "where it runs (the source of a copy between clusters)"},
        "kind": {"type": "string", "enum": list(KINDS)},
        "path": {"type": "string"},
        "to": {"type": ["string", "null"]},
        "to_cluster": {
            "type": ["string", "null"],
            "description": "the destination of a copy between clusters",
        },
        "state": {"type": "string", "enum": list(STATES)},
        "progress": {
            "type": "object",
            "additionalProperties": False,
            "required": ["bytes_done", "bytes_total", "files_done", "files_total"],
            "properties": {
                "bytes_done": COUNT,
                "bytes_total": COUNT,
                "files_done": COUNT,
                "files_total": COUNT,
            },
            "description": "as far as known (null: not yet); files count directories too",
        },
        "route": {
            "type": "string",
            "enum": ["local", "push", "relay"],
            "description": "local: on one cluster; push: the source sends over SSH with a certificate "
            "signed for this copy; relay: the service streams the bytes",
        },
        "runner": {
            "type": "string",
            "enum": ["job", "detached", "service"],
            "description": "a Slurm job (job_id), a process on the login node, or the service (a relay)",
        },
        "job_id": {"type": ["string", "null"]},
        "created_at": TIME,
        "ended_at": nullable(),
        "error": {"type": ["string", "null"]},
    },
}
CLUSTER_ERROR = {
    "type": "object",
    "required": ["cluster", "status", "code", "description"],
    "properties": {
        "cluster": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "description": {"type": "string"},
    },
}
OPERATION_LIST = {
    "type": "object",
    "required": ["operations"],
    "properties": {"cluster": {"type": "string"}, "operations": {"type": "array", "items": OPERATION}},
}
FEDERATED_LIST = {
    "type": "object",
    "required": ["operations", "errors"],
    "properties": {
        "operations": {"type": "array", "items": OPERATION},
        "errors": {"type": "array", "items": CLUSTER_ERROR},
    },
}
