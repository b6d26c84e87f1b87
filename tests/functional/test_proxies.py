"""Client addresses behind a reverse proxy, under the real waitress with the shipped ini files."""

import http.client
import json
import urllib.parse
import uuid

import pytest
from sqlalchemy import create_engine, text

from hcc_federation import main
from tests.helpers import ROOT, ini_server_options, live_server

FORWARDED = "203.0.113.7"  # TEST-NET-3: what a proxy says the client was


def _failed_login_address(url: str, database_url: str, source: str, forwarded: str | None) -> str:
    """The client address the service recorded for a failed login sent from ``source``."""
    username = f"ghost{uuid.uuid4().hex[:8]}"
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30, source_address=(source, 0))
    headers = {"Content-Type": "application/json", **({"X-Forwarded-For": forwarded} if forwarded else {})}
    try:
        conn.request("POST", "/api/v1/sessions", json.dumps({"username": username, "password": "x"}), headers)
        assert conn.getresponse().status == 401
    finally:
        conn.close()
    engine = create_engine(database_url)
    try:
        with engine.connect() as db:
            return db.execute(
                text("SELECT client_addr FROM audit_log WHERE username = :u"), {"u": username}
            ).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.parametrize("ini", ["development.ini", "production.ini"])
def test_trusted_proxies_is_the_one_setting_under_waitress(settings, database_url, ini):
    options = ini_server_options(ROOT / ini)
    # hcc.api.trusted_proxies alone decides, whatever the ini tells waitress
    trusting = main({}, **{**settings, "hcc.api.trusted_proxies": "127.0.0.1"})
    with live_server(trusting, **options) as url:
        assert _failed_login_address(url, database_url, "127.0.0.1", FORWARDED) == FORWARDED
        # a peer that is not a trusted proxy cannot choose its address
        assert _failed_login_address(url, database_url, "127.0.0.2", FORWARDED) == "127.0.0.2"
        assert _failed_login_address(url, database_url, "127.0.0.1", None) == "127.0.0.1"
    distrusting = main({}, **{**settings, "hcc.api.trusted_proxies": ""})
    with live_server(distrusting, **options) as url:
        assert _failed_login_address(url, database_url, "127.0.0.1", FORWARDED) == "127.0.0.1"
