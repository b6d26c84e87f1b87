"""The legacy portal's request bodies (colander) and answers (JSON schemas for the OpenAPI document)."""

from __future__ import annotations

import colander

from ..api.schemas import PasswordString, StrictSchema, StrictString

# what the portal sends: paths as it writes them (absolute, or $HOME/...); the views resolve them
_PATH = {"validator": colander.Length(min=1, max=4096)}
_NAME = {"validator": colander.Length(min=1, max=255)}


class LoginBody(StrictSchema):
    username = colander.SchemaNode(StrictString(), validator=colander.Length(min=1, max=256))
    password = colander.SchemaNode(PasswordString(), validator=colander.Length(min=1, max=1024))


class NewPasswordBody(StrictSchema):
    newPassword = colander.SchemaNode(PasswordString(), validator=colander.Length(min=1, max=1024))


class PathBody(StrictSchema):
    path = colander.SchemaNode(StrictString(), **_PATH)


class CreateFileBody(PathBody):
    filename = colander.SchemaNode(StrictString(), **_NAME)


class CreateDirectoryBody(PathBody):
    dirname = colander.SchemaNode(StrictString(), **_NAME)


class RenameBody(PathBody):
    oldName = colander.SchemaNode(StrictString(), **_NAME)
    newName = colander.SchemaNode(StrictString(), **_NAME)


class DeleteBody(PathBody):
    name = colander.SchemaNode(StrictString(), **_NAME)


class PasteBody(StrictSchema):
    src = colander.SchemaNode(StrictString(), **_PATH)
    dest = colander.SchemaNode(StrictString(), **_PATH)


class TextBody(StrictSchema):
    text = colander.SchemaNode(StrictString(), validator=colander.Length(max=16 * 1024 * 1024))


class JobIdBody(StrictSchema):
    jobId = colander.SchemaNode(StrictString(), validator=colander.Length(min=1, max=64))


class LabelBody(StrictSchema):
    cluster = colander.SchemaNode(StrictString(), validator=colander.Length(min=1, max=64))


class NotebookIdBody(StrictSchema):
    jupyterId = colander.SchemaNode(StrictString(), validator=colander.Length(min=1, max=64))


STRING = {"type": "string"}
USER_OUT = {
    "type": "object",
    "required": ["username", "fullname", "email", "description", "groups"],
    "properties": {
        "username": STRING,
        "fullname": {"type": ["string", "null"]},
        "email": {"type": ["string", "null"]},
        "description": {"type": ["string", "null"]},
        "groups": {"type": "array", "items": STRING},
    },
}
LOGIN_OUT = {
    "type": "object",
    "required": ["user"],
    "properties": {
        "user": {"oneOf": [USER_OUT, {"type": "null"}], "description": "null when the login failed"},
        "session": {
            "type": "object",
            "required": ["uid", "token"],
            "properties": {
                "uid": {**STRING, "description": "the username"},
                "token": {**STRING, "description": "this service's session token"},
            },
        },
        "error": {**STRING, "description": "why the login failed (only then)"},
    },
}
OK_OUT = {
    "type": "object",
    "required": ["ok"],
    "properties": {"ok": {"type": "boolean"}, "err": {**STRING, "description": "why not (only then)"}},
}
FILE_OUT = {
    "type": "object",
    "required": ["path", "name", "type", "content"],
    "properties": {
        "path": {**STRING, "description": "the path as the portal gave it ($HOME/... stays so)"},
        "name": STRING,
        "type": {"type": "string", "enum": ["directory", "text file", "symbolic link", "binary file"]},
        "content": {
            "type": ["string", "null"],
            "description": "a directory: `ls -lhoQ` (stripped); a text file: its text; a symbolic link:"
            " `symbolic link to <target>`; a binary file: null",
        },
    },
}
RENAMED_OUT = {
    "type": "object",
    "required": ["parent", "child"],
    "properties": {"parent": FILE_OUT, "child": FILE_OUT},
}
JOBS_OUT = {
    "type": "object",
    "required": ["timestamp", "fields", "values"],
    "properties": {
        "timestamp": {"type": "number", "description": "epoch seconds"},
        "fields": {"type": "array", "items": STRING},
        "values": {
            "type": "array",
            "items": STRING,
            "description": "one job per string, as `sacct -p -X -n -o <fields>` prints it",
        },
    },
}
JOB_DETAIL_OUT = {
    "type": "object",
    "required": ["timestamp", "fields", "values", "nodes", "stdout", "stderr"],
    "properties": {
        **JOBS_OUT["properties"],
        "values": {"type": "array", "items": STRING, "description": "the 15 fields; values[5] is the State"},
        "nodes": {
            "type": "object",
            "additionalProperties": STRING,
            "description": "while RUNNING: node -> `top -b -n 1` of the user's processes there",
        },
        "stdout": {
            "type": ["string", "null"],
            "description": "the absolute path of the job's standard output, Slurm's filename patterns"
            " resolved, as /api/v1's job detail gives it; null where it cannot be known (not in the"
            " old API: the portal ignores it)",
        },
        "stderr": {
            "type": ["string", "null"],
            "description": "the same for its standard error (the stdout path when not separate)",
        },
    },
}
SUBMITTED_OUT = {
    "type": "object",
    "required": ["ok", "result"],
    "properties": {
        "ok": {"type": "boolean"},
        "result": {**STRING, "description": "Submitted batch job <id>"},
    },
}
LINK_OUT = {
    "type": "object",
    "required": ["link"],
    "properties": {
        "link": {**STRING, "description": "relative to the portal's server URL; no header needed"}
    },
}
JUPYTER_OUT = {
    "type": "object",
    "required": ["id", "cluster", "username", "token", "port", "pid", "startedAt"],
    "description": "a live notebook of the notebooks service (/api/v1/clusters/{cluster}/notebooks/{id});"
    " the portal opens `<scheme>://<this service's host>:<port>/?token=<token>`",
    "properties": {
        "id": {**STRING, "description": "the notebook's id (stop_jupyter's jupyterId)"},
        "cluster": {**STRING, "description": "the portal's label, as it sent it"},
        "username": STRING,
        "token": {**STRING, "description": "the notebook server's token"},
        "port": {
            "type": ["integer", "null"],
            "description": "where the server listens; null while a batch notebook's job waits",
        },
        "pid": {
            "type": ["integer", "null"],
            "description": "the server's pid (login mode); null in batch mode",
        },
        "startedAt": {
            "type": "number",
            "description": "epoch seconds: when the server answered, or when it was asked for until then",
        },
    },
}
JUPYTERS_OUT = {
    "type": "object",
    "required": ["jupyters"],
    "properties": {"jupyters": {"type": "array", "items": JUPYTER_OUT}},
}
