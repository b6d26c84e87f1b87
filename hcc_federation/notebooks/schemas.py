"""The notebooks API's colander schema for a start, and its response documents for the OpenAPI document."""

from __future__ import annotations

import colander

from ..api.schemas import PathString, StrictSchema, StrictString
from ..jobs.schemas import CLUSTER_ERROR
from ..timefmt import JSON_SCHEMA as TIME
from ..timefmt import nullable
from .service import STATES


class StrictInt(colander.Int):
    """An integer, not a string or a float that looks like one."""

    def deserialize(self, node, cstruct):
        if cstruct is not colander.null and (isinstance(cstruct, bool) or not isinstance(cstruct, int)):
            raise colander.Invalid(node, f"must be an integer, not {type(cstruct).__name__}")
        return super().deserialize(node, cstruct)


class StartNotebookSchema(StrictSchema):
    mode = colander.SchemaNode(
        StrictString(),
        missing=colander.drop,
        validator=colander.OneOf(["batch", "login"]),
        description="batch (a Slurm job on a compute node) or login (a process on the login node); "
        "default: the cluster's first allowed mode",
    )
    partition = colander.SchemaNode(
        StrictString(), missing=colander.drop, validator=colander.Length(1, 64), description="batch mode only"
    )
    hours = colander.SchemaNode(
        StrictInt(),
        missing=colander.drop,
        validator=colander.Range(1, 24 * 366),
        description="how long the notebook may live (default and limit: the cluster's notebook_max_hours)",
    )
    cpus = colander.SchemaNode(
        StrictInt(), missing=colander.drop, validator=colander.Range(1, 100000), description="batch mode only"
    )
    memory = colander.SchemaNode(
        StrictInt(),
        missing=colander.drop,
        validator=colander.Range(1, 2**31 - 1),
        description="MiB, batch mode only",
    )
    work_dir = colander.SchemaNode(
        PathString(),
        missing=colander.drop,
        validator=colander.Length(1, 4096),
        description="the server's root directory (default: the home directory)",
    )


_NULLABLE_STRING = {"type": ["string", "null"]}
NOTEBOOK_PROPERTIES = {
    "id": {"type": "string"},
    "cluster": {"type": "string"},
    "mode": {"type": "string", "enum": ["batch", "login"]},
    "state": {"type": "string", "enum": list(STATES)},
    "host": {**_NULLABLE_STRING, "description": "the machine the server runs on, once known"},
    "port": {"type": ["integer", "null"]},
    "url": {**_NULLABLE_STRING, "description": "where to open it, with its token; only while live"},
    "job_id": {**_NULLABLE_STRING, "description": "the Slurm job (batch mode)"},
    "reason": {**_NULLABLE_STRING, "description": "why a batch notebook is still pending (Slurm's reason)"},
    "error": {
        **_NULLABLE_STRING,
        "description": "why it failed or stopped, from the job's output or the server's log",
    },
    "work_dir": {"type": "string"},
    "created_at": TIME,
    "started_at": nullable(),
    "expires_at": TIME,
    "stopped_at": nullable(),
}
NOTEBOOK = {"type": "object", "required": list(NOTEBOOK_PROPERTIES), "properties": NOTEBOOK_PROPERTIES}
NOTEBOOK_LIST_OUT = {
    "type": "object",
    "required": ["cluster", "notebooks"],
    "properties": {"cluster": {"type": "string"}, "notebooks": {"type": "array", "items": NOTEBOOK}},
}
FEDERATED_NOTEBOOKS_OUT = {
    "type": "object",
    "required": ["notebooks", "errors"],
    "properties": {
        "notebooks": {"type": "array", "items": NOTEBOOK},
        "errors": {"type": "array", "items": CLUSTER_ERROR},
    },
}
