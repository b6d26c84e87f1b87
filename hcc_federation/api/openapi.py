"""The OpenAPI 3 document, built from the Cornice services and their colander schemas."""

from __future__ import annotations

import re

import colander
from cornice import Service
from cornice.service import get_services

from .docs import documented

openapi = Service(name="openapi", path="/api/v1/openapi.json", description="This API's OpenAPI document")

ERROR_ENVELOPE = {
    "type": "object",
    "required": ["status", "errors"],
    "properties": {
        "status": {"type": "string", "enum": ["error"]},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["location", "name", "description"],
                "properties": {
                    "location": {"type": "string"},
                    "name": {"type": ["string", "null"]},
                    "description": {"type": "string"},
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
    400: "Invalid input",
    401: "No valid bearer token",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    412: "Precondition failed",
    413: "Body too large",
    415: "Unsupported content type",
    429: "Too many attempts",
    500: "Internal error",
    502: "Bad gateway",
    503: "Unavailable",
    504: "Timeout",
    507: "Insufficient storage",
}


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
    validator = node.validator
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


def _operation(service: Service, method: str, view, args: dict, path_enums: dict[str, list[str]]) -> dict:
    summary = (view.__doc__ or "").strip().splitlines()[0] if view.__doc__ else service.description
    statuses = getattr(view, "hcc_statuses", (200,))
    operation: dict = {"summary": summary, "operationId": f"{service.name}_{method.lower()}", "responses": {}}
    tag = getattr(view, "hcc_tag", None)
    if tag:
        operation["tags"] = [tag]
    if args.get("permission"):
        operation["security"] = [{"bearer": []}]
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", **({"enum": path_enums[name]} if name in path_enums else {})},
        }
        for name in re.findall(r"{(\w+)", service.path)
    ]
    schema = args.get("schema")
    querystring = getattr(view, "hcc_querystring", None)
    if querystring is not None:
        params += _parameters(querystring, "query")
    if schema is not None and method in ("POST", "PUT", "PATCH"):
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _node_schema(schema)}},
        }
    elif schema is not None:
        params += _parameters(schema, "query")
    if params:
        operation["parameters"] = params
    for status in statuses:
        entry: dict = {"description": STATUS_TEXT.get(status, str(status))}
        if status >= 400:
            entry["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        elif status != 204 and getattr(view, "hcc_response", None):
            entry["content"] = {"application/json": {"schema": view.hcc_response}}
        operation["responses"][str(status)] = entry
    return operation


def build_document(services=None, clusters: list[str] | None = None) -> dict:
    """The OpenAPI document of every registered Cornice service.

    With this deployment's cluster names, ``{cluster}`` is documented as one of them.
    """
    path_enums = {"cluster": clusters} if clusters else {}
    paths: dict = {}
    for service in services if services is not None else get_services():
        item = paths.setdefault(service.path, {})
        for method, view, args in service.definitions:
            if method == "HEAD":
                continue
            item[method.lower()] = _operation(service, method, view, args, path_enums)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hcc-federation",
            "version": "1",
            "description": "Act for a person on several HPC clusters: sessions, jobs, files and notebooks.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": ERROR_ENVELOPE},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@openapi.get()
@documented(200, response={"type": "object"}, tag="meta")
def get_openapi(request):
    """This API's OpenAPI 3.1 document."""
    return build_document(clusters=[c.name for c in request.registry.hcc_clusters])
