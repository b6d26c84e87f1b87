"""Views are private by default; the few public ones say so, and nothing else answers without a session."""

import re

import pytest
from cornice.service import get_services
from pyramid.interfaces import IDefaultPermission
from pyramid.security import NO_PERMISSION_REQUIRED
from webtest import TestApp

from hcc_federation import main
from hcc_federation.auth.policy import AUTHENTICATED
from hcc_federation.models.meta import Base

# (route, method): what anyone may call without a token
PUBLIC = {
    ("sessions", "POST"),  # log in
    ("health", "GET"),
    ("health", "HEAD"),
    ("openapi", "GET"),
    ("openapi", "HEAD"),
    ("download_link", "GET"),  # the link's own secret is the credential
    ("download_link", "HEAD"),
    ("legacy_login_user", "POST"),  # the legacy portal's log in
    ("legacy_download", "GET"),  # the legacy portal's way to a download link
    ("legacy_download", "HEAD"),
}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    d = tmp_path_factory.mktemp("public")
    (d / "known_hosts").write_text("")
    app = main(
        {},
        **{
            "hcc.database.url": f"sqlite:///{d}/registry.sqlite",
            "hcc.auth.secret": "p" * 32,
            # a closed loopback port: the directory is down, which health and login report
            "hcc.ldap.uri": "ldap://127.0.0.1:9",
            "hcc.ldap.user_base": "ou=People,dc=example,dc=org",
            "hcc.ldap.group_base": "dc=example,dc=org",
            "hcc.api.cors_origins": "https://portal.example.org",
            "hcc.clusters": "alpha",
            "hcc.cluster.alpha.host": "127.0.0.1",
            "hcc.cluster.alpha.port": "9",
            "hcc.cluster.alpha.known_hosts": str(d / "known_hosts"),
        },
    )
    Base.metadata.create_all(app.registry.hcc_engine)
    yield app
    app.registry.hcc_pool.close_all()
    app.registry.hcc_engine.dispose()


def route_permissions(registry) -> dict[tuple[str, str], str]:
    """{(route, method): the permission its view needs}, the default one where it names none.

    Cornice's own fallback views (405 for a method a route lacks) carry no method and are left out.
    """
    default = registry.queryUtility(IDefaultPermission)
    out = {}
    for view in registry.introspector.get_category("views"):
        intr = view["introspectable"]
        if not intr["route_name"] or not intr["request_methods"]:
            continue
        named = [r["value"] for r in view["related"] if r.category_name == "permissions"]
        methods = intr["request_methods"]
        for method in (methods,) if isinstance(methods, str) else methods:
            out[(intr["route_name"], method)] = named[0] if named else default
    return out


def test_every_view_is_private_unless_it_says_it_is_public(app):
    permissions = route_permissions(app.registry)
    assert app.registry.queryUtility(IDefaultPermission) == AUTHENTICATED
    assert {k for k, v in permissions.items() if v == NO_PERMISSION_REQUIRED} == PUBLIC
    assert {v for k, v in permissions.items() if k not in PUBLIC} == {AUTHENTICATED}


def _paths() -> dict[str, str]:
    """Each route's path with its placeholders filled in."""
    return {
        s.name: re.sub(r"{(\w+)[^}]*}", lambda m: "alpha" if m[1] == "cluster" else "x", s.path)
        for s in get_services()
    }


def test_without_a_token_only_public_views_answer(app):
    client = TestApp(app, extra_environ={"REMOTE_ADDR": "127.0.0.1"}, lint=False)
    paths = _paths()
    statuses = {}
    for route, method in sorted(route_permissions(app.registry)):
        body = b"{}" if method in ("POST", "PUT", "PATCH") else b""
        r = client.request(
            paths[route] + "?path=/tmp",
            method=method,
            body=body,
            content_type="application/json",
            expect_errors=True,
        )
        statuses[(route, method)] = r.status_int
    assert {k for k, status in statuses.items() if status != 401} == PUBLIC, statuses


def test_a_cors_preflight_needs_no_token(app):
    client = TestApp(app, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    r = client.options(
        "/api/v1/sessions/current",
        headers={"Origin": "https://portal.example.org", "Access-Control-Request-Method": "DELETE"},
    )
    assert r.status_int == 204
