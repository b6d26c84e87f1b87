"""The contract comes from the service declarations: query strings, bodies and streamed routes."""

from cornice.service import get_services
from cornice.validators import colander_body_validator, colander_querystring_validator

import hcc_federation.api.health
import hcc_federation.api.me
import hcc_federation.api.sessions
import hcc_federation.clusters.views
import hcc_federation.files.links
import hcc_federation.files.views
import hcc_federation.jobs.views  # noqa: F401  (each module declares its services on import)
from hcc_federation.api.openapi import build_document
from hcc_federation.api.tweens import streaming_body_routes

FILES = "/api/v1/clusters/{cluster}/files"


def _definitions():
    return [
        (service, method, view, args)
        for service in get_services()
        for method, view, args in service.definitions
    ]


def test_every_schema_is_checked_by_the_cornice_validator_of_its_location():
    for service, method, view, args in _definitions():
        assert not hasattr(view, "hcc_querystring"), f"{service.path} {method}: declare it on the service"
        if args.get("schema") is not None:
            validators = args.get("validators", ())
            assert colander_body_validator in validators or colander_querystring_validator in validators, (
                f"{service.path} {method}: a schema that no validator checks"
            )


def test_a_streamed_upload_documents_its_query_string_and_no_json_body():
    paths = build_document(clusters=["alpha"])["paths"]
    for path, method, names in (
        (FILES + "/content", "put", ["path"]),
        (FILES + "/upload", "post", ["path", "overwrite"]),
        (FILES, "get", ["path", "offset", "limit", "all"]),
        (FILES, "delete", ["path", "recursive"]),
    ):
        operation = paths[path][method]
        assert [p["name"] for p in operation["parameters"] if p["in"] == "query"] == names
        assert "application/json" not in operation.get("requestBody", {}).get("content", {})


def test_the_streamed_routes_are_the_services_own():
    routes = streaming_body_routes()
    streamed = {(method, route.pattern) for method, route in routes}
    legacy_upload = ("POST", "/{cluster}/myapp/upload_file/{path:.*}")
    assert streamed == {("PUT", FILES + "/content"), ("POST", FILES + "/upload"), legacy_upload}

    def streams(method, path):
        return any(m == method and route.match(path) is not None for m, route in routes)

    assert streams("PUT", "/api/v1/clusters/alpha/files/content")
    assert streams("POST", "/api/v1/clusters/beta/files/upload")
    assert not streams("POST", "/api/v1/clusters/alpha/files/content")
    # the legacy portal's upload, whose directory is the rest of the URL
    assert streams("POST", "/beta/myapp/upload_file/$HOME/a dir/b")
    assert not streams("POST", "/beta/myapp/update_text/$HOME/a.txt")
    assert not streams("PUT", "/api/v1/clusters/alpha/files/content/x")
    assert not streams("POST", "/api/v1/clusters/alpha/files/mkdir")


def test_the_document_states_the_one_time_format_and_every_time_field_follows_it():
    from hcc_federation.timefmt import PATTERN

    document = build_document(clusters=["alpha"])
    assert "YYYY-MM-DDTHH:MM:SSZ" in document["info"]["description"]
    times = []

    def walk(node, name=""):
        if isinstance(node, dict):
            if node.get("format") == "date-time":
                times.append((name, node.get("pattern")))
            for key, value in node.items():
                walk(value, key)
        elif isinstance(node, list):
            for value in node:
                walk(value, name)

    walk(document["paths"])
    names = {name for name, _ in times}
    assert {"expires_at", "created_at", "mtime", "submit_time", "checked_at", "sampled_at"} <= names
    assert all(pattern == PATTERN for _, pattern in times), times
