"""Each kind of failure answers with its own stable code, next to the status, location and name."""

import uuid

import pytest

from hcc_federation.api.error_map import all_codes
from tests.helpers import make_app

FILES = "/api/v1/clusters/alpha/files"


def entry(response, status: int) -> dict:
    """The envelope's one entry, checked to be complete and to carry a documented code."""
    assert response.status_int == status
    body = response.json
    assert body["status"] == "error" and len(body["errors"]) == 1
    error = body["errors"][0]
    assert set(error) == {"location", "name", "description", "code"}
    assert error["code"] in all_codes()
    return error


def where(error: dict) -> tuple[str, str, str]:
    return error["code"], error["location"], error["name"]


@pytest.fixture
def alice(login) -> dict:
    return login("alice")


def test_file_errors_say_what_happened(app, alice):
    missing = f"/home/alice/no-such-{uuid.uuid4().hex}"
    r = app.get(FILES, {"path": missing}, headers=alice, status=404)
    assert where(entry(r, 404)) == ("no_such_path", "querystring", "path")
    r = app.get(FILES, {"path": "/root"}, headers=alice, status=403)
    assert where(entry(r, 403)) == ("permission_denied", "querystring", "path")
    # the same rule on a path given in the body points at the body
    r = app.post_json(FILES + "/mkdir", {"path": "/home/alice"}, headers=alice, status=409)
    assert where(entry(r, 409)) == ("already_exists", "body", "path")
    r = app.get(FILES, {"path": "relative/path"}, headers=alice, status=400)
    assert where(entry(r, 400)) == ("invalid_argument", "querystring", "path")


def test_an_unknown_cluster_and_an_unknown_job(app, alice):
    r = app.get("/api/v1/clusters/gamma/files", {"path": "/"}, headers=alice, status=404)
    assert where(entry(r, 404)) == ("cluster_not_found", "path", "cluster")
    r = app.get("/api/v1/clusters/alpha/jobs/999999999", headers=alice, status=404)
    assert where(entry(r, 404)) == ("job_not_found", "path", "job_id")
    r = app.get("/api/v1/clusters/alpha/jobs/1;id", headers=alice, status=400)
    assert where(entry(r, 400)) == ("invalid_argument", "path", "job_id")


def test_schema_failures_and_plain_http_errors(app, alice):
    # Cornice's own validation
    r = app.post_json(FILES + "/mkdir", {"path": "/home/alice/x", "bogus": 1}, headers=alice, status=400)
    assert entry(r, 400)["code"] == "validation_failed"
    assert entry(app.get("/api/v1/nothing-here", status=404), 404)["code"] == "not_found"
    assert entry(app.put_json("/api/v1/sessions", {}, status=405), 405)["code"] == "method_not_allowed"
    assert entry(app.post("/api/v1/sessions", "x=1", status=415), 415)["code"] == "unsupported_media_type"
    assert entry(app.get("/api/v1/me", status=401), 401)["code"] == "unauthenticated"


def test_login_failures(app, users):
    r = app.post_json("/api/v1/sessions", {"username": "bob", "password": "wrong"}, status=401)
    assert where(entry(r, 401)) == ("invalid_credentials", "header", "Authorization")
    for _ in range(4):
        app.post_json("/api/v1/sessions", {"username": "bob", "password": "wrong"}, status=401)
    r = app.post_json(
        "/api/v1/sessions", {"username": "bob", "password": users["bob"]["password"]}, status=429
    )
    assert where(entry(r, 429)) == ("too_many_attempts", "body", "username")
    assert int(r.headers["Retry-After"]) >= 1


def test_a_database_outage(base_settings, users):
    down = make_app({**base_settings, "hcc.database.url": "mysql+mysqldb://u:p@127.0.0.1:1/none"})
    body = {"username": "alice", "password": users["alice"]["password"]}
    r = down.post_json("/api/v1/sessions", body, status=503)
    assert where(entry(r, 503)) == ("database_unavailable", "body", "database")
    assert int(r.headers["Retry-After"]) >= 1
    health = down.get("/api/v1/health", status=503).json
    assert [(e["name"], e["code"]) for e in health["errors"]] == [("database", "database_unavailable")]
