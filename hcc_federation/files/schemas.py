"""Request and response schemas of the file routes."""

from __future__ import annotations

import colander

from .. import files
from ..api.schemas import PathString, StrictSchema
from ..timefmt import nullable


class JsonBoolean(colander.Boolean):
    """true or false in JSON; "yes", 1 or "false" are refused rather than guessed."""

    def deserialize(self, node, cstruct):
        if cstruct is not colander.null and not isinstance(cstruct, bool):
            raise colander.Invalid(node, f"must be true or false, not {type(cstruct).__name__}")
        return cstruct


def _query_boolean() -> colander.SchemaNode:
    # only these four spellings: a typo such as "ture" must not silently mean false
    return colander.SchemaNode(
        colander.Boolean(false_choices=("false", "0"), true_choices=("true", "1")), missing=False
    )


def _path_node(
    name: str = "path", description: str = "an absolute path on the cluster"
) -> colander.SchemaNode:
    return colander.SchemaNode(
        PathString(),
        name=name,
        validator=colander.Length(min=1, max=files.MAX_PATH_BYTES),
        description=description,
    )


class PathQuery(StrictSchema):
    path = _path_node()


class ListQuery(StrictSchema):
    path = _path_node()
    offset = colander.SchemaNode(colander.Integer(), missing=0, validator=colander.Range(min=0))
    limit = colander.SchemaNode(
        colander.Integer(),
        missing=files.DEFAULT_LIST_LIMIT,
        validator=colander.Range(min=0, max=files.MAX_LIST_LIMIT),
        description="entries of a directory per page (directories first, then by name)",
    )
    all = colander.SchemaNode(
        colander.Boolean(false_choices=("false", "0"), true_choices=("true", "1")),
        missing=False,
        description=(
            "true: every entry of a directory from offset on, in one answer whose limit is the "
            "number of its entries (limit must not be given then: 400); a directory of more than "
            f"{files.MAX_WHOLE_LISTING} entries is a 413 listing_too_large"
        ),
    )


class DeleteQuery(StrictSchema):
    path = _path_node()
    recursive = _query_boolean()


class UploadQuery(StrictSchema):
    path = _path_node(description="the directory that receives the files")
    overwrite = _query_boolean()


class PathBody(StrictSchema):
    path = _path_node()


class MkdirBody(StrictSchema):
    path = _path_node()
    parents = colander.SchemaNode(JsonBoolean(), missing=False)


class MoveBody(StrictSchema):
    path = _path_node()
    to = _path_node("to", "the new absolute path; it must not exist")


# ---------------------------------------------------------------------------- response schemas

ENTRY_PROPERTIES = {
    "path": {"type": "string"},
    "name": {"type": "string"},
    "type": {"type": "string", "enum": ["file", "directory", "symlink", "other"]},
    "size": {"type": "integer"},
    "mode": {"type": "string", "description": "permission bits in octal, e.g. 0644"},
    "owner": {"type": ["string", "null"]},
    "group": {"type": ["string", "null"]},
    "mtime": nullable(),
    "target": {"type": ["string", "null"], "description": "a symlink's target"},
    "etag": {
        "type": "string",
        "description": "a file's strong entity tag, for If-Match (in a file's metadata, not in listings)",
    },
    "mime": {"type": "string", "description": "a file's MIME type, guessed"},
    "text": {"type": ["boolean", "null"], "description": "a file looks like UTF-8 text (null: not read)"},
}
# The fields every entry has; a symlink adds target, a file mime and text, a file's metadata etag.
ENTRY = {
    "type": "object",
    "required": ["path", "name", "type", "size", "mode", "owner", "group", "mtime"],
    "additionalProperties": False,
    "properties": ENTRY_PROPERTIES,
}
METADATA_OUT = {
    "type": "object",
    "required": ENTRY["required"],
    "properties": {
        **ENTRY_PROPERTIES,
        "entries": {"type": "array", "items": ENTRY},
        "offset": {"type": "integer"},
        "limit": {"type": "integer"},
        "total": {"type": "integer"},
    },
}
ENTRY_OUT = ENTRY
UPLOAD_OUT = {
    "type": "object",
    "required": ["files"],
    "properties": {"files": {"type": "array", "items": ENTRY_OUT}},
}

# A file's bytes: their media type is guessed from the name, so any type may come back.
# OpenAPI 3.1 describes raw bytes by their media type alone: a JSON Schema "type": "string" is text,
# and a validator (openapi-core) refused every downloaded file against it.
FILE_CONTENT = {"*/*": {"schema": {"description": "the file's bytes; Content-Type says what they are"}}}


UPLOAD_FORM = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "format": "binary"},
                    "description": "one part per file, named by the part's filename (or filename*)",
                }
            },
        },
        "encoding": {"file": {"contentType": "application/octet-stream"}},
    }
}
