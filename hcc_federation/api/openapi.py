"""The OpenAPI 3 document, built from the Cornice services and their colander schemas."""

from __future__ import annotations

import re

import colander
from cornice import Service
from cornice.service import get_services
from cornice.validators import colander_body_validator, colander_querystring_validator
from pyramid.security import NO_PERMISSION_REQUIRED

from ..jobs.validation import JOB_ID_PATTERN
from ..timefmt import PATTERN as TIME_PATTERN
from .docs import documented
from .error_map import all_codes

TIME_FORMAT_NOTE = (
    "Every time in an answer is RFC 3339 in UTC to the second, YYYY-MM-DDTHH:MM:SSZ"
    f" (each such field has the pattern {TIME_PATTERN})."
)

openapi = Service(name="openapi", path="/api/v1/openapi.json", description="This API's OpenAPI document")

_CODES = all_codes()
ERROR_CODE = {
    "type": "string",
    "enum": list(_CODES),
    "description": "What failed, stable for a client to branch on:\n\n| code | meaning |\n|---|---|\n"
    + "\n".join(f"| `{code}` | {meaning} |" for code, meaning in _CODES.items()),
}
ERROR_ENVELOPE = {
    "type": "object",
    "required": ["status", "errors"],
    "properties": {
        "status": {"type": "string", "enum": ["error"]},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["location", "name", "description", "code"],
                "properties": {
                    "location": {"type": "string"},
                    "name": {"type": ["string", "null"]},
                    "description": {"type": "string"},
                    "code": ERROR_CODE,
                },
            },
        },
    },
}

STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No content",
    206: "Partial content",
    304: "Not modified",
    400: "Invalid input",
    401: "No valid bearer token",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    412: "Precondition failed",
    413: "Body too large",
    415: "Unsupported content type",
    416: "Range not satisfiable",
    429: "Too many attempts",
    500: "Internal error",
    502: "Bad gateway",
    503: "Unavailable",
    504: "Timeout",
    507: "Insufficient storage",
}


# Request headers that views act on, by name (documented(headers=...) picks them).
HEADER_PARAMETERS = {
    "Range": {
        "description": "one byte range: bytes=first-last, first- or -suffix (several: the whole file)",
        "schema": {"type": "string", "pattern": r"^bytes=[0-9]*-[0-9]*(,[0-9]*-[0-9]*)*$"},
    },
    "If-Range": {
        "description": "the ETag the Range applies to; another ETag gets the whole file",
        "schema": {"type": "string"},
    },
    "If-None-Match": {
        "description": "ETags (or *) the client has: 304 when the file still has one of them",
        "schema": {"type": "string"},
    },
    "If-Match": {
        "description": "the ETag (or *) the file must still have, else 412",
        "schema": {"type": "string"},
    },
}
# Path parameters other than {cluster} (whose names come from this deployment), as the views check them.
PATH_PARAMETERS = {
    "job_id": {
        "type": "string",
        "pattern": f"^{JOB_ID_PATTERN}$",
        "description": "a Slurm job id: 123, 123_4 (array task) or 123+1 (heterogeneous component)",
    },
    "token": {"type": "string", "description": "the download link's token, as its url gives it"},
    # the legacy portal's routes (hcc_federation/legacy)
    "path": {
        "type": "string",
        "description": "the rest of the URL, slashes included and not encoded: an absolute path, or one"
        " that starts with a named file system ($HOME, $WORK...) of the cluster",
    },
    "day": {"type": "string", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "description": "YYYY-MM-DD"},
    "label": {"type": "string", "description": "the portal's own name for the backend, echoed back"},
}
# A route's parameter may take a Pyramid regex ({path:.*}: slashes included); OpenAPI names it only.
_ROUTE_REGEX = re.compile(r"{(\w+):[^}]*}")
LEGACY_TAG = "legacy"


def document_path(route_path: str) -> str:
    """The OpenAPI path of a route: ``{path:.*}`` (a Pyramid regex) becomes ``{path}``."""
    return _ROUTE_REGEX.sub(r"{\1}", route_path)


def _validators(validator) -> list:
    if isinstance(validator, colander.All):
        return [v for inner in validator.validators for v in _validators(inner)]
    return [validator] if validator is not None else []


def _node_schema(node: colander.SchemaNode) -> dict:
    typ = node.typ
    if isinstance(typ, colander.Mapping):
        properties = {child.name: _node_schema(child) for child in node.children}
        required = [child.name for child in node.children if child.required]
        out: dict = {"type": "object", "properties": properties}
        if required:
            out["required"] = required
        if getattr(typ, "unknown", "ignore") == "raise":
            out["additionalProperties"] = False
        return out
    if isinstance(typ, colander.Sequence):
        return {"type": "array", "items": _node_schema(node.children[0])}
    if isinstance(typ, colander.Boolean):
        out = {"type": "boolean"}
    elif isinstance(typ, colander.Integer):
        out = {"type": "integer"}
    elif isinstance(typ, colander.Float):
        out = {"type": "number"}
    elif isinstance(typ, colander.DateTime):
        out = {"type": "string", "format": "date-time"}
    elif isinstance(typ, colander.Date):
        out = {"type": "string", "format": "date"}
    else:
        out = {"type": "string"}
    # a type of ours says what it accepts (IsoDate: a date's pattern; StateList: its names)
    out.update(getattr(typ, "json_schema", {}))
    for validator in _validators(node.validator):
        if isinstance(validator, colander.Length):
            key = "Length" if out["type"] == "string" else "Items"
            if validator.min is not None:
                out[f"min{key}"] = validator.min
            if validator.max is not None:
                out[f"max{key}"] = validator.max
        elif isinstance(validator, colander.Range):
            if validator.min is not None:
                out["minimum"] = validator.min
            if validator.max is not None:
                out["maximum"] = validator.max
        elif isinstance(validator, colander.OneOf):
            out["enum"] = list(validator.choices)
        elif isinstance(validator, colander.Regex):
            out["pattern"] = validator.match_object.pattern
    if node.description:
        out["description"] = str(node.description)
    if node.default is not colander.null and not isinstance(node.default, colander._drop):
        out["default"] = node.default
    return out


def _parameters(schema: colander.SchemaNode, location: str) -> list[dict]:
    return [
        {"name": child.name, "in": location, "required": child.required, "schema": _node_schema(child)}
        for child in schema.children
    ]


def is_private(args: dict) -> bool:
    """Whether a view needs a session: all do (the default permission) unless they say otherwise."""
    return args.get("permission") != NO_PERMISSION_REQUIRED


def _statuses(view, args: dict, json_body: bool) -> list[int]:
    """The view's own statuses and those that the layers around every view add."""
    statuses = set(getattr(view, "hcc_statuses", (200,)))
    # any route: a URL that is not UTF-8 (the url-encoding tween)
    statuses.add(400)
    if is_private(args):
        # the token is looked up in the registry database: 401 without a valid one, 503 when it is down
        statuses |= {401, 503}
    if json_body:
        # the body limit, the JSON depth bound and Cornice's content-type check
        statuses |= {400, 413, 415}
    return sorted(statuses)


def _operation(service: Service, method: str, view, args: dict, path_enums: dict[str, list[str]]) -> dict:
    summary = (view.__doc__ or "").strip().splitlines()[0] if view.__doc__ else service.description
    operation: dict = {"summary": summary, "operationId": f"{service.name}_{method.lower()}", "responses": {}}
    tag = getattr(view, "hcc_tag", None)
    if tag:
        operation["tags"] = [tag]
    if is_private(args):
        operation["security"] = [{"bearer": []}]
    if tag == LEGACY_TAG:
        # the old hcc-jobs portal's routes: kept for it, not for new clients
        operation["deprecated"] = True
        if is_private(args):
            operation["security"] = [{"myAuthorization": []}, {"bearer": []}]
    params = []
    for name in re.findall(r"{(\w+)", service.path):
        schema = {"type": "string"}
        if name in path_enums:
            schema["enum"] = path_enums[name]
        schema.update(PATH_PARAMETERS.get(name, {}))
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    # The service declares where its schema applies, by the Cornice validator that checks it.
    schema = args.get("schema")
    validators = args.get("validators", ())
    json_body = schema is not None and colander_body_validator in validators
    if json_body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _node_schema(schema)}},
        }
    elif schema is not None and colander_querystring_validator in validators:
        params += _parameters(schema, "query")
    if getattr(view, "hcc_body", None):
        operation["requestBody"] = {"required": True, "content": view.hcc_body}
    for name in getattr(view, "hcc_headers", ()):
        params.append({"name": name, "in": "header", "required": False, **HEADER_PARAMETERS[name]})
    if params:
        operation["parameters"] = params
    for status in _statuses(view, args, json_body):
        entry: dict = {"description": STATUS_TEXT.get(status, str(status))}
        if status >= 400:
            entry["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        elif status in (204, 304):
            pass
        elif getattr(view, "hcc_content", None):
            entry["content"] = view.hcc_content
        elif getattr(view, "hcc_response", None):
            entry["content"] = {"application/json": {"schema": view.hcc_response}}
        if status < 300 and getattr(view, "hcc_response_headers", None):
            entry["headers"] = view.hcc_response_headers
        operation["responses"][str(status)] = entry
    return operation


def build_document(services=None, clusters: list[str] | None = None) -> dict:
    """The OpenAPI document of every registered Cornice service.

    With this deployment's cluster names, ``{cluster}`` is documented as one of them.
    """
    path_enums = {"cluster": clusters} if clusters else {}
    paths: dict = {}
    for service in services if services is not None else get_services():
        item = paths.setdefault(document_path(service.path), {})
        for method, view, args in service.definitions:
            if method == "HEAD":
                continue
            item[method.lower()] = _operation(service, method, view, args, path_enums)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hcc-federation",
            "version": "1",
            "description": "Act for a person on several HPC clusters: sessions, jobs and files."
            f" {TIME_FORMAT_NOTE}",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": ERROR_ENVELOPE},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "myAuthorization": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "MyAuthorization",
                    "description": "legacy portal routes only: <token>$<base64 of the password>; only"
                    " the token part authenticates",
                },
            },
        },
    }


@openapi.get(permission=NO_PERMISSION_REQUIRED)
@documented(200, response={"type": "object"}, tag="meta")
def get_openapi(request):
    """This API's OpenAPI 3.1 document."""
    return build_document(clusters=[c.name for c in request.registry.hcc_clusters])
