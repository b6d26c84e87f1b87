"""The pure parts of refusing hostile input: URL decoding, JSON depth, error views on a bad path."""

from pyramid.httpexceptions import HTTPNotFound
from webob import Request

from hcc_federation.api.errors import http_error_view, internal_error_view, request_path
from hcc_federation.api.tweens import json_too_deep, undecodable_url


def _environ(path: str, query: str = "") -> dict:
    # as a WSGI server hands them over (PEP 3333): the path as latin-1 text of its bytes
    return Request.blank("/", environ={"PATH_INFO": path, "QUERY_STRING": query}).environ


def test_undecodable_url():
    assert undecodable_url(_environ("/api/v1/me")) is None
    assert undecodable_url(_environ("/api/v1/\xc3\xa9t\xc3\xa9", "a=%C3%A9&b=+&c")) is None
    assert undecodable_url(_environ("/api/v1/me\xff"))[:2] == ("url", "path")
    assert undecodable_url(_environ("/ok", "since=%ff"))[:2] == ("querystring", "since")
    assert undecodable_url(_environ("/ok", "a=1&%ff=2"))[:2] == ("querystring", "querystring")


def test_json_depth():
    assert not json_too_deep(b'{"a": [1, {"b": [2]}]}', limit=4)
    assert json_too_deep(b'{"a": [1, {"b": [[2]]}]}', limit=4)
    assert json_too_deep(b"[" * 100_000)
    # brackets inside strings, escaped quotes included, are text
    assert not json_too_deep(b'["[[[[[[", "\\"[[[[[[[[", "{{{{{{{"]', limit=2)
    # siblings are not depth
    assert not json_too_deep(b"[" + b"[[]]," * 1000 + b"[]]", limit=3)


def test_error_views_do_not_crash_on_a_path_that_is_not_utf8():
    request = Request.blank("/", environ={"PATH_INFO": "/api/v1/x\xff\n"})
    assert request_path(request) == "/api/v1/x%FF%0A"
    r = http_error_view(HTTPNotFound(), request)
    assert r.status_int == 404 and "/api/v1/x%FF%0A" in r.json["errors"][0]["description"]
    assert internal_error_view(RuntimeError("x"), request).status_int == 500
