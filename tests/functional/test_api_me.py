"""The caller's profile and password, against the real directory."""

import ldap3
import pytest


def test_profile_and_groups(app, login, users):
    r = app.get("/api/v1/me", headers=login("alice"), status=200)
    assert r.json == {
        "username": "alice",
        "fullname": users["alice"]["cn"],
        "email": "alice@example.org",
        "description": "test user alice",
        # posixGroup memberUid (hpcusers, alpha-users, beta-users) and groupOfNames member (gpu-team)
        "groups": ["alpha-users", "beta-users", "gpu-team", "hpcusers"],
    }


def test_bob_has_his_own_groups(app, login):
    assert app.get("/api/v1/me", headers=login("bob")).json["groups"] == ["alpha-users", "hpcusers"]


def test_profile_needs_a_session(app):
    app.get("/api/v1/me", status=401)


def _admin(endpoints) -> ldap3.Connection:
    ldap = endpoints["ldap"]
    host, port = ldap["uri"].removeprefix("ldap://").split(":")
    conn = ldap3.Connection(
        ldap3.Server(host, port=int(port)), ldap["admin_dn"], ldap["admin_password"], auto_bind=True
    )
    return conn


@pytest.fixture
def bob_password_restored(endpoints, users):
    """Whatever a test does to bob's LDAP password, put it back (his SSH password is separate)."""
    yield
    conn = _admin(endpoints)
    conn.extend.standard.modify_password(user=users["bob"]["dn"], new_password=users["bob"]["password"])
    conn.unbind()


def test_password_change_ends_every_session_and_the_new_password_works(
    app, login, users, bob_password_restored
):
    first, second = login("bob"), login("bob")
    old, new = users["bob"]["password"], "bob-new-pw-2"
    app.put_json(
        "/api/v1/me/password", {"current_password": old, "new_password": new}, headers=first, status=204
    )
    app.get("/api/v1/me", headers=first, status=401)
    app.get("/api/v1/me", headers=second, status=401)
    app.post_json("/api/v1/sessions", {"username": "bob", "password": old}, status=401)
    headers = login_with(app, "bob", new)
    # and back, through the API
    app.put_json(
        "/api/v1/me/password", {"current_password": new, "new_password": old}, headers=headers, status=204
    )
    login_with(app, "bob", old)


def login_with(app, name, password) -> dict:
    token = app.post_json("/api/v1/sessions", {"username": name, "password": password}, status=201).json[
        "token"
    ]
    return {"Authorization": f"Bearer {token}"}


def test_a_wrong_current_password_is_a_400_and_changes_nothing(app, login, users, bob_password_restored):
    headers = login("bob")
    r = app.put_json(
        "/api/v1/me/password",
        {"current_password": "wrong", "new_password": "x-new"},
        headers=headers,
        status=400,
    )
    assert r.json["errors"][0]["name"] == "current_password"
    app.get("/api/v1/me", headers=headers, status=200)


def test_the_directory_refusing_a_password_gives_its_reason(
    app, login, users, endpoints, bob_password_restored
):
    policy = "cn=default,ou=Policies," + endpoints["ldap"]["base"]
    conn = _admin(endpoints)
    conn.modify(
        policy,
        {
            "pwdMinLength": [(ldap3.MODIFY_REPLACE, ["20"])],
            "pwdCheckQuality": [(ldap3.MODIFY_REPLACE, ["2"])],
        },
    )
    try:
        headers = login("bob")
        r = app.put_json(
            "/api/v1/me/password",
            {"current_password": users["bob"]["password"], "new_password": "short"},
            headers=headers,
            status=400,
        )
        assert r.json["errors"][0]["name"] == "new_password"
        assert "refused" in r.json["errors"][0]["description"]
        # the session is still good: nothing changed
        app.get("/api/v1/me", headers=headers, status=200)
    finally:
        conn.modify(
            policy,
            {
                "pwdMinLength": [(ldap3.MODIFY_REPLACE, ["0"])],
                "pwdCheckQuality": [(ldap3.MODIFY_REPLACE, ["0"])],
            },
        )
        conn.unbind()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"current_password": "x"},
        {"current_password": 1, "new_password": "y"},
        {"new_password": "y", "x": 1},
    ],
)
def test_malformed_password_bodies(app, login, body):
    app.put_json("/api/v1/me/password", body, headers=login("alice"), status=400)


def test_wrong_current_passwords_count_against_the_login_limits(app, login, users, monkeypatch):
    """Guessing through the password change is throttled like logging in: 429 before LDAP is asked."""
    from tests.functional.test_api_sessions import _count_directory_calls

    headers = login("bob")
    calls = _count_directory_calls(monkeypatch, [app], "change_password")
    body = {"current_password": "guess", "new_password": "x-new"}
    for _ in range(5):
        app.put_json("/api/v1/me/password", body, headers=headers, status=400)
    r = app.put_json("/api/v1/me/password", body, headers=headers, status=429)
    assert 1 <= int(r.headers["Retry-After"]) <= 300
    assert r.json["errors"][0]["name"] == "current_password"
    assert len(calls) == 5
    # the same limit as logins: bob's right password must wait too
    login_body = {"username": "bob", "password": users["bob"]["password"]}
    app.post_json("/api/v1/sessions", login_body, status=429)


@pytest.mark.parametrize("password", ["pw\x00rest", "pw\x07", "pw\ufffe", "\ud800pw"])
def test_a_current_password_that_saslprep_refuses_is_a_wrong_one(app, login, password):
    r = app.put_json(
        "/api/v1/me/password",
        {"current_password": password, "new_password": "x-new"},
        headers=login("bob"),
        status=400,
    )
    assert r.json["errors"][0]["name"] == "current_password"


@pytest.mark.parametrize("password", ["pw\x00rest", "\ud800pw"])
def test_a_new_password_that_saslprep_refuses_is_refused(app, login, users, password, bob_password_restored):
    r = app.put_json(
        "/api/v1/me/password",
        {"current_password": users["bob"]["password"], "new_password": password},
        headers=login("bob"),
        status=400,
    )
    assert r.json["errors"][0]["name"] == "new_password"


def test_a_refused_new_password_with_a_wrong_current_one_is_a_wrong_current_password(app, login):
    # a refused new password means the current one was right and forgives earlier failures:
    # it must never be said before the current password is proven
    r = app.put_json(
        "/api/v1/me/password",
        {"current_password": "guess", "new_password": "pw\x00rest"},
        headers=login("bob"),
        status=400,
    )
    assert r.json["errors"][0]["name"] == "current_password"
