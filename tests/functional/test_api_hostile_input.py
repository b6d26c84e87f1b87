"""Hostile URLs and bodies get a 400 in the envelope, never a 500 or a crashed error view."""

import json

import pytest

from tests.functional.test_api_basics import assert_envelope

ORIGIN = "https://portal.example.org"  # allowed by the test settings' hcc.api.cors_origins

# routes of every kind: public, authenticated, unknown, streaming (the body limit reads the path)
PATHS_WITH_BAD_ESCAPE = [
    ("GET", "/%ff"),
    ("GET", "/api/v1/health%ff"),
    ("GET", "/api/v1/openapi.json%FF"),
    ("GET", "/api/v1/me%ff"),
    ("GET", "/api/v1/clusters/alpha%ff"),
    ("GET", "/api/v1/clusters/alpha/jobs/%ff"),
    ("GET", "/api/v1/links/%c3%28"),  # a truncated two-byte sequence
    ("POST", "/api/v1/sessions%ff"),
    ("PUT", "/api/v1/clusters/alpha/files/content%ff"),
    ("DELETE", "/api/v1/clusters/alpha/jobs/1%ff"),
]


@pytest.mark.parametrize("authenticated", [False, True], ids=["anonymous", "token"])
@pytest.mark.parametrize(("method", "path"), PATHS_WITH_BAD_ESCAPE)
def test_a_path_that_is_not_utf8_is_a_400_envelope(app, login, method, path, authenticated):
    headers = {"Origin": ORIGIN, **(login("alice") if authenticated else {})}
    r = app.request(path, method=method, headers=headers, body=b"{}", status="*")
    assert_envelope(r, 400)
    assert r.json["errors"][0]["location"] == "url"
    assert r.json["errors"][0]["name"] == "path"
    # the CORS headers are there, so a portal can read the error
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN


QUERIES_WITH_BAD_ESCAPE = [
    ("GET", "/api/v1/clusters/alpha/jobs?since=%ff", "since"),
    ("GET", "/api/v1/clusters/alpha/jobs?state=RUNNING%e9", "state"),
    ("GET", "/api/v1/jobs?since=%ff", "since"),
    ("GET", "/api/v1/clusters/alpha/files?path=/tmp/%ff", "path"),
    ("GET", "/api/v1/me?x=%ff", "x"),
    ("POST", "/api/v1/clusters/alpha/jobs?limit=%ff", "limit"),
]


@pytest.mark.parametrize(("method", "url", "name"), QUERIES_WITH_BAD_ESCAPE)
def test_a_query_string_that_is_not_utf8_is_a_400_naming_the_parameter(app, login, method, url, name):
    r = app.request(url, method=method, headers=login("alice"), body=b"{}", status="*")
    assert_envelope(r, 400)
    assert (r.json["errors"][0]["location"], r.json["errors"][0]["name"]) == ("querystring", name)


@pytest.mark.parametrize(
    "url", ["/api/v1/health?x=%ff", "/api/v1/openapi.json?%ff", "/api/v1/links/abc?x=%C3", "/api/v1/me?x=%ff"]
)
def test_a_query_string_that_is_not_utf8_is_a_400_without_a_token_too(app, url):
    r = app.get(url, status="*")
    assert_envelope(r, 400)
    assert r.json["errors"][0]["location"] == "querystring"


def test_login_with_a_query_string_that_is_not_utf8_is_a_400(app, users):
    body = {"username": "alice", "password": users["alice"]["password"]}
    r = app.post_json("/api/v1/sessions?next=%ff", body, status="*")
    assert_envelope(r, 400)
    assert r.json["errors"][0]["location"] == "querystring"
    r = app.post_json("/api/v1/sessions?%ff=1", body, status="*")
    assert_envelope(r, 400)


def test_a_valid_utf8_path_still_reaches_the_router(app, login):
    r = app.get("/api/v1/clusters/%C3%A9t%C3%A9", headers=login("alice"), status=404)
    assert_envelope(r, 404)
    assert "été" in r.json["errors"][0]["description"]
    r = app.get("/api/v1/%C3%A9t%C3%A9", status=404)
    # the description names the path as the client wrote it
    assert "/api/v1/%C3%A9t%C3%A9" in r.json["errors"][0]["description"]


def test_deeply_nested_json_is_a_400_before_anything_parses_it(app):
    # 100,000 "[" is under the 1 MiB body limit; Python's json recursed on it (RecursionError, 500)
    r = app.post("/api/v1/sessions", "[" * 100_000, content_type="application/json", status="*")
    assert_envelope(r, 400)
    assert r.json["errors"][0]["location"] == "body"
    assert "nested deeper" in r.json["errors"][0]["description"]


def test_deeply_nested_json_is_a_400_on_authenticated_routes(app, login):
    body = '{"path": ' + "[" * 5000 + "]" * 5000 + "}"
    for url in ("/api/v1/clusters/alpha/files/mkdir", "/api/v1/clusters/alpha/jobs"):
        r = app.post(url, body, headers=login("alice"), content_type="application/json", status="*")
        assert_envelope(r, 400)
        assert "nested deeper" in r.json["errors"][0]["description"]


def test_json_as_deep_as_allowed_is_still_parsed(app):
    from hcc_federation.api.tweens import MAX_JSON_DEPTH

    # within the bound: the usual 400 from validation (not a list), not the depth refusal
    body = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    r = app.post("/api/v1/sessions", body, content_type="application/json", status=400)
    assert "nested deeper" not in r.text


def test_a_since_after_today_everywhere_is_a_400_naming_since(app, login):
    from datetime import UTC, datetime, timedelta

    from tests.functional.test_api_jobs import commands_run

    alice = login("alice")
    before = commands_run(app)
    # the day after the last time zone's today (UTC+14) has begun nowhere: a mistake (it was a 502)
    too_late = (datetime.now(UTC) + timedelta(hours=14, days=1)).date().isoformat()
    for url in ("/api/v1/clusters/alpha/jobs", "/api/v1/jobs"):
        r = app.get(url, {"since": too_late}, headers=alice, status=400)
        assert_envelope(r, 400)
        assert (r.json["errors"][0]["location"], r.json["errors"][0]["name"]) == ("querystring", "since")
    assert commands_run(app) == before
    r = app.get("/api/v1/clusters/alpha/jobs", {"since": "2999-01-01"}, headers=alice, status=400)
    assert "future" in r.json["errors"][0]["description"]


def test_a_since_that_is_today_somewhere_answers_200(app, login):
    from datetime import UTC, datetime, timedelta

    # today in UTC+14 may be tomorrow on the cluster: the history is empty then, never a 502
    latest = (datetime.now(UTC) + timedelta(hours=14)).date().isoformat()
    r = app.get("/api/v1/clusters/alpha/jobs", {"since": latest}, headers=login("alice"), status=200)
    assert isinstance(r.json["jobs"], list)


def test_any_bytes_in_the_path_or_the_query_never_give_a_5xx(app, users):
    """Raw bytes %-escaped into the path and the query of several routes: a 4xx envelope or a
    success, never a 5xx (schemathesis's fuzzing only sends valid UTF-8)."""
    import urllib.parse

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.helpers import login_token

    alice = {"Authorization": f"Bearer {login_token(app, users, 'alice')}"}
    routes = [
        "/api/v1/clusters/alpha/jobs/{}",
        "/api/v1/links/{}",
        "/api/v1/clusters/{}",
        "/api/v1/clusters/alpha/files?path=/tmp/{}",
        "/api/v1/jobs?since={}",
        "/api/v1/me?{}=1",
    ]

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(route=st.sampled_from(routes), raw=st.binary(min_size=1, max_size=12))
    def check(route, raw):
        r = app.get(route.format(urllib.parse.quote_from_bytes(raw, safe="")), headers=alice, status="*")
        assert r.status_int < 500, (route, raw, r.status, r.text[:300])
        if r.status_int >= 400:
            assert_envelope(r, r.status_int)

    check()


def _json_with_escapes(body: dict) -> str:
    # json.dumps writes a lone surrogate as the escape \ud800, as a hostile client would send it
    return json.dumps(body, ensure_ascii=True)


def test_a_lone_surrogate_in_a_login_name_is_a_400_not_a_500(app):
    body = _json_with_escapes({"username": "al\ud800ice", "password": "x"})
    r = app.post("/api/v1/sessions", body, content_type="application/json", status="*")
    assert_envelope(r, 400)
    assert (r.json["errors"][0]["location"], r.json["errors"][0]["name"]) == ("body", "username")


# should a check ever let one through, sbatch refuses this script: no job can run
REFUSED_SCRIPT = "#!/bin/sh\n#SBATCH --partition=hcc-no-such-partition\ntrue\n"


@pytest.mark.parametrize(
    "body",
    [
        {"script": REFUSED_SCRIPT, "work_dir": "/tmp", "name": "x\ud800"},
        {"script": REFUSED_SCRIPT + "# \udfff\n", "work_dir": "/tmp"},
        {"script_path": "/tmp/\ud800.sh"},
        {"script": REFUSED_SCRIPT, "work_dir": "/tmp/\ud800"},
    ],
    ids=["name", "script", "script_path", "work_dir"],
)
def test_a_lone_surrogate_in_a_job_is_a_400_and_runs_nothing(app, login, body):
    from tests.functional.test_api_jobs import commands_run

    alice = login("alice")
    before = commands_run(app)
    r = app.post(
        "/api/v1/clusters/alpha/jobs",
        _json_with_escapes(body),
        headers=alice,
        content_type="application/json",
        status="*",
    )
    assert_envelope(r, 400)
    assert r.json["errors"][0]["name"] in body
    assert commands_run(app) == before


@pytest.mark.parametrize("charset", ["bogus", "\xff", "utf-16", "latin-1"])
def test_a_json_body_in_another_charset_is_a_415(app, users, charset):
    # RFC 8259: JSON between systems is UTF-8; an unknown charset made WebOb's decode raise (500)
    body = json.dumps({"username": "alice", "password": users["alice"]["password"]})
    r = app.post(
        "/api/v1/sessions", body, headers={"Content-Type": f"application/json; charset={charset}"}, status="*"
    )
    assert_envelope(r, 415)
    assert (r.json["errors"][0]["location"], r.json["errors"][0]["name"]) == ("header", "Content-Type")


def test_a_json_body_declared_utf8_is_fine(app, users):
    body = json.dumps({"username": "alice", "password": users["alice"]["password"]})
    for charset in ("utf-8", "UTF-8", '"utf8"'):
        headers = {"Content-Type": f"application/json; charset={charset}"}
        app.post("/api/v1/sessions", body, headers=headers, status=201)
