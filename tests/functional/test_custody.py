"""What a session keeps, what start-up refuses, and what never reaches a log."""

import logging
import shutil

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from hcc_federation import main
from hcc_federation.auth.crypto import open_credential, parse_token
from hcc_federation.models import UserSession
from hcc_federation.settings import parse_settings
from tests.helpers import cluster_settings, login_token, make_app


def _sealed_credential(database_url: str, settings: dict, token_text: str) -> dict | None:
    token = parse_token(token_text)
    engine = create_engine(database_url)
    with Session(engine) as db:
        blob = db.scalar(select(UserSession.credential).where(UserSession.token_id == token.token_id))
    engine.dispose()
    return open_credential(parse_settings(settings).auth.secret, token, blob) if blob else None


def test_certificate_only_deployments_keep_no_password(base_settings, database_url, endpoints, users):
    settings = {
        **base_settings,
        **cluster_settings(endpoints, {"alpha": "certificate", "beta": "certificate"}),
        "hcc.database.url": database_url,
    }
    app = make_app(settings)
    token = login_token(app, users)
    credential = _sealed_credential(database_url, settings, token)
    assert set(credential) == {"ssh_key", "ssh_cert"}
    assert users["alice"]["password"] not in str(credential)
    # and the certificate works on both clusters
    for name in ("alpha", "beta"):
        app.get(f"/api/v1/clusters/{name}", headers={"Authorization": f"Bearer {token}"}, status=200)


def test_password_only_deployments_make_no_key(base_settings, database_url, endpoints, users):
    settings = {
        **base_settings,
        **cluster_settings(endpoints, {"alpha": "password", "beta": "password"}),
        "hcc.database.url": database_url,
    }
    token = login_token(make_app(settings), users)
    assert set(_sealed_credential(database_url, settings, token)) == {"password"}


def test_startup_refuses_a_ca_key_that_others_can_read(settings, tmp_path, endpoints):
    readable = tmp_path / "user_ca"
    shutil.copy(endpoints["ssh_user_ca"]["private_key"], readable)
    readable.chmod(0o644)
    with pytest.raises(ValueError, match=str(readable)):
        main({}, **{**settings, "hcc.ssh.ca_key": str(readable)})


def test_a_configured_lock_attribute_locks_the_account(settings, users):
    # stands in for 389-DS/FreeIPA's nsAccountLock, which this OpenLDAP schema does not have:
    # any attribute and value the directory keeps for a locked account
    app = make_app(
        {**settings, "hcc.ldap.lock_attribute": "description", "hcc.ldap.lock_value": "test user bob"}
    )
    body = {"username": "bob", "password": users["bob"]["password"]}
    r = app.post_json("/api/v1/sessions", body, status=403)
    assert r.json["errors"][0]["description"] == "the account is locked"
    # "locked" only once the bind proved the password: a wrong one is a wrong password
    app.post_json("/api/v1/sessions", {"username": "bob", "password": "wrong"}, status=401)
    login_token(app, users, "alice")


def test_no_password_or_token_reaches_the_logs(app, users, caplog):
    caplog.set_level(logging.DEBUG)
    password = users["alice"]["password"]
    app.post_json("/api/v1/sessions", {"username": "alice", "password": "wrong-" + password}, status=401)
    token = login_token(app, users)
    headers = {"Authorization": f"Bearer {token}"}
    app.get("/api/v1/clusters/alpha", headers=headers, status=200)
    app.get("/api/v1/me", headers={"Authorization": f"Bearer {token}x"}, status=401)
    app.delete("/api/v1/sessions/current", headers=headers, status=204)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "login of alice" in logged  # the logs are there, only without secrets
    for secret in (password, token, token.split(".")[1]):
        assert secret not in logged
