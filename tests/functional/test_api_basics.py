"""The error envelope, CORS, health, the OpenAPI document, the audit log and secrets at rest."""

import json
import re
from pathlib import Path

import pytest
from cornice.service import get_services
from sqlalchemy import create_engine, inspect, text
from webtest import TestApp

from hcc_federation.api.error_map import all_codes
from hcc_federation.api.openapi import document_path
from tests.helpers import make_app, run_testbed_up, stop_testbed_daemon


def assert_envelope(response, status):
    assert response.status_int == status
    assert response.content_type == "application/json"
    body = response.json
    assert body["status"] == "error"
    assert body["errors"] and all(
        set(e) == {"location", "name", "description", "code"} for e in body["errors"]
    )
    assert all(e["code"] in all_codes() for e in body["errors"])


def test_unknown_route_is_a_404_envelope(app):
    assert_envelope(app.get("/api/v1/nothing-here", status=404), 404)
    assert_envelope(app.get("/", status=404), 404)


def test_wrong_method_is_a_405_envelope_with_allow(app):
    r = app.put_json("/api/v1/sessions", {}, status=405)
    assert_envelope(r, 405)
    assert "POST" in r.headers["Allow"]


def test_wrong_content_type_is_a_415_envelope(app):
    assert_envelope(app.post("/api/v1/sessions", "username=alice", status=415), 415)


def test_huge_body_is_a_413_envelope_before_anything_reads_it(app):
    body = json.dumps({"username": "alice", "password": "x" * (2 * 1024 * 1024)})
    assert_envelope(app.post("/api/v1/sessions", body, content_type="application/json", status=413), 413)


def test_an_unexpected_error_is_a_500_envelope_that_tells_nothing(settings):
    from pyramid.config import Configurator
    from pyramid.security import NO_PERMISSION_REQUIRED

    def boom(request):
        raise RuntimeError("secret detail /etc/shadow")

    with Configurator(settings=settings) as config:
        for part in (".settings", ".db", ".auth", ".api"):
            config.include("hcc_federation" + part)
        config.add_route("boom", "/boom")
        # public: views are private by default, and this one must reach the error, not the 401
        config.add_view(boom, route_name="boom", permission=NO_PERMISSION_REQUIRED)
    r = TestApp(config.make_wsgi_app()).get("/boom", status=500)
    assert_envelope(r, 500)
    assert "secret" not in r.text


def test_cors_preflight_for_an_allowed_origin(app):
    r = app.options(
        "/api/v1/me",
        headers={
            "Origin": "https://portal.example.org",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
        status=204,
    )
    assert r.headers["Access-Control-Allow-Origin"] == "https://portal.example.org"
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    assert "GET" in r.headers["Access-Control-Allow-Methods"]


def test_cors_refuses_other_origins(app):
    r = app.options(
        "/api/v1/me",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        status=403,
    )
    assert "Access-Control-Allow-Origin" not in r.headers
    r = app.get("/api/v1/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_cors_headers_on_actual_responses_and_errors(app):
    r = app.get("/api/v1/me", headers={"Origin": "https://portal.example.org"}, status=401)
    assert r.headers["Access-Control-Allow-Origin"] == "https://portal.example.org"
    assert "WWW-Authenticate" in r.headers["Access-Control-Expose-Headers"]


def test_answers_are_not_stored_by_caches(app, login):
    assert app.get("/api/v1/me", headers=login("alice")).headers["Cache-Control"] == "no-store"
    assert app.get("/api/v1/nothing-here", status=404).headers["Cache-Control"] == "no-store"


def test_health_reports_database_and_ldap(app):
    r = app.get("/api/v1/health", status=200)
    assert r.json["status"] == "ok"
    assert r.json["checks"]["database"]["ok"] and r.json["checks"]["ldap"]["ok"]


def test_health_is_503_when_the_directory_is_unreachable(settings):
    broken = make_app({**settings, "hcc.ldap.uri": "ldap://127.0.0.1:1"})
    r = broken.get("/api/v1/health", status=503)
    assert_envelope(r, 503)
    assert r.json["checks"]["database"]["ok"] is True
    assert r.json["checks"]["ldap"]["ok"] is False


def test_openapi_documents_every_service_and_method(app):
    doc = app.get("/api/v1/openapi.json", status=200).json
    assert doc["openapi"].startswith("3.")
    for service in get_services():
        path = document_path(service.path)
        assert path in doc["paths"], f"{service.path} is not documented"
        for method, _view, _ in service.definitions:
            if method == "HEAD":
                continue
            op = doc["paths"][path].get(method.lower())
            assert op, f"{method} {service.path} is not documented"
            assert op["summary"], f"{method} {service.path} has no summary"
            assert op["responses"], f"{method} {service.path} lists no responses"
    # path parameters name this deployment's clusters, so a client (or a fuzzer) knows them
    cluster_param = doc["paths"]["/api/v1/clusters/{cluster}"]["get"]["parameters"][0]
    assert cluster_param["name"] == "cluster" and cluster_param["schema"]["enum"] == ["alpha", "beta"]
    login = doc["paths"]["/api/v1/sessions"]["post"]
    assert set(login["requestBody"]["content"]["application/json"]["schema"]["required"]) == {
        "username",
        "password",
    }
    assert {"201", "401", "403", "429"} <= set(login["responses"])
    paths = doc["paths"]

    def params(path, method):
        return {(p["in"], p["name"]): p for p in paths[path][method].get("parameters", [])}

    files = "/api/v1/clusters/{cluster}/files"
    # bodies that are not JSON: a file's bytes, and a multipart form of file parts
    put = paths[files + "/content"]["put"]
    assert put["requestBody"]["content"]["application/octet-stream"]["schema"]["format"] == "binary"
    upload = paths[files + "/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["properties"]["file"]["items"]["format"] == "binary"
    # the conditional and range headers where the views act on them
    assert {("header", "If-Match")} <= set(params(files + "/content", "put"))
    for path in (files + "/content", "/api/v1/links/{token}"):
        assert {("header", "Range"), ("header", "If-Range"), ("header", "If-None-Match")} <= set(
            params(path, "get")
        )
        assert {"206", "304", "416"} <= set(paths[path]["get"]["responses"])
    # patterns for what the views check
    assert params(files, "get")[("query", "path")]["schema"]["pattern"].startswith("^/")
    job_id = params("/api/v1/clusters/{cluster}/jobs/{job_id}", "get")[("path", "job_id")]["schema"]
    assert re.fullmatch(job_id["pattern"].strip("^$"), "123_4") and not re.search(job_id["pattern"], "1;id")
    since = params("/api/v1/jobs", "get")[("query", "since")]["schema"]
    assert since["format"] == "date" and since["pattern"]
    # every route may refuse a URL that is not UTF-8; every authenticated one needs the database
    for path, item in paths.items():
        for method, op in item.items():
            assert "400" in op["responses"], f"{method} {path}"
            if op.get("security"):
                assert {"401", "503"} <= set(op["responses"]), f"{method} {path}"
            if "application/json" in op.get("requestBody", {}).get("content", {}):
                assert {"400", "413", "415"} <= set(op["responses"]), f"{method} {path}"
    assert "429" in paths["/api/v1/me/password"]["put"]["responses"]


def test_audit_log_records_logins_logouts_and_failures_without_secrets(app, login, users, database_url):
    app.post_json("/api/v1/sessions", {"username": "alice", "password": "bad-guess"}, status=401)
    headers = login("alice", REMOTE_ADDR="127.0.0.5")
    app.delete(
        "/api/v1/sessions/current", headers=headers, extra_environ={"REMOTE_ADDR": "127.0.0.5"}, status=204
    )
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT event, username, client_addr, outcome, detail FROM audit_log ORDER BY id DESC")
        ).all()
    engine.dispose()
    recent = [tuple(r) for r in rows[:3]]
    assert recent[0][:4] == ("logout", "alice", "127.0.0.5", "success")
    assert recent[1][:4] == ("login", "alice", "127.0.0.5", "success")
    assert recent[2][:4] == ("login", "alice", "127.0.0.1", "failure")
    assert all("bad-guess" not in str(r) for r in rows)


def test_the_database_holds_no_password_or_token_in_clear(app, users, database_url):
    password = users["alice"]["password"]
    token = app.post_json("/api/v1/sessions", {"username": "alice", "password": password}, status=201).json[
        "token"
    ]
    token_id, secret = token.split(".")
    engine = create_engine(database_url)
    dump = []
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f"SELECT * FROM {table}")):
                for value in row:
                    dump.append(value if isinstance(value, bytes) else str(value).encode())
    engine.dispose()
    blob = b"\n".join(dump)
    assert token_id.encode() in blob  # the lookup half is stored, by design
    for needle in (password, secret, token):
        assert needle.encode() not in blob


def test_migrations_make_exactly_the_models_schema(database_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from hcc_federation.models import Base

    engine = create_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def _slapd_pid(endpoints) -> int:
    return int(Path(endpoints["ldap"]["slapd_pidfile"]).read_text())


@pytest.mark.slow
def test_ldap_down_means_503_on_login_while_sessions_keep_working(app, login, users, endpoints):
    headers = login("alice")
    pidfile = endpoints["ldap"]["slapd_pidfile"]
    stop_testbed_daemon(pidfile, "/usr/sbin/slapd")
    try:
        r = app.post_json(
            "/api/v1/sessions", {"username": "alice", "password": users["alice"]["password"]}, status=503
        )
        assert_envelope(r, 503)
        app.get("/api/v1/sessions/current", headers=headers, status=200)
        assert app.get("/api/v1/health", status=503).json["checks"]["ldap"]["ok"] is False
    finally:
        run_testbed_up()
    app.post_json(
        "/api/v1/sessions", {"username": "alice", "password": users["alice"]["password"]}, status=201
    )


def test_a_database_outage_is_a_clean_503(base_settings, users):
    # a MySQL URL whose server is not there: every replica would see this while the database is down
    down = make_app({**base_settings, "hcc.database.url": "mysql+mysqldb://u:p@127.0.0.1:1/none"})
    body = {"username": "alice", "password": users["alice"]["password"]}
    assert_envelope(down.post_json("/api/v1/sessions", body, status=503), 503)
    token = "0" * 32 + "." + "A" * 43
    r = down.get("/api/v1/sessions/current", headers={"Authorization": f"Bearer {token}"}, status=503)
    assert r.json["errors"][0]["name"] == "database"
    health = down.get("/api/v1/health", status=503).json
    assert health["checks"]["database"]["ok"] is False and health["checks"]["ldap"]["ok"] is True
