"""Settings are parsed once; a missing or malformed value names its key."""

import pytest

from hcc_federation.settings import SettingsError, parse_settings
from tests.helpers import BASE_SETTINGS


def test_defaults():
    s = parse_settings(BASE_SETTINGS, {})
    assert s.auth.idle_timeout == 6 * 3600 and s.auth.max_age == 24 * 3600
    assert s.ldap.lock_attribute is None
    assert s.api.cors_origins == ()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "hcc.database.url",
            None,
            "hcc.database.url is required (or the environment variable HCC_DATABASE_URL)",
        ),
        ("hcc.database.url", "not a url", "hcc.database.url"),
        ("hcc.auth.secret", None, "hcc.auth.secret is required"),
        ("hcc.auth.secret", "short", "hcc.auth.secret must be at least 32"),
        ("hcc.ldap.uri", "http://x", "hcc.ldap.uri must start with ldap://"),
        ("hcc.ldap.user_base", None, "hcc.ldap.user_base is required"),
        ("hcc.ldap.user_filter", "(uid=alice)", "hcc.ldap.user_filter must contain {login}"),
        ("hcc.auth.idle_timeout", "soon", "hcc.auth.idle_timeout must be an integer"),
        ("hcc.auth.idle_timeout", "5", "hcc.auth.idle_timeout must be at least 60"),
        ("hcc.auth.idle_timeout", "999999", "must not exceed hcc.auth.max_age"),
        ("hcc.database.echo", "maybe", "hcc.database.echo must be true or false"),
        ("hcc.api.cors_origins", "portal.example.org", "hcc.api.cors_origins"),
        ("hcc.ldap.timeout", "-1", "hcc.ldap.timeout must be at least"),
        # a follow request must never ask slurmctld in a busy loop, nor sleep for minutes between looks
        ("hcc.jobs.output_poll_interval", "0.01", "hcc.jobs.output_poll_interval must be at least 0.2"),
        ("hcc.jobs.output_poll_interval", "61", "hcc.jobs.output_poll_interval must be at most 60"),
        ("hcc.jobs.output_follow_max_seconds", "0", "hcc.jobs.output_follow_max_seconds must be at least 1"),
    ],
)
def test_bad_values_name_the_key(key, value, message):
    raw = dict(BASE_SETTINGS)
    if value is None:
        raw.pop(key, None)
    else:
        raw[key] = value
    with pytest.raises(SettingsError) as info:
        parse_settings(raw, {})
    assert message in str(info.value)


def test_environment_overrides_secrets_and_url():
    raw = {k: v for k, v in BASE_SETTINGS.items() if k not in ("hcc.auth.secret", "hcc.database.url")}
    s = parse_settings(
        raw,
        {
            "HCC_AUTH_SECRET": "e" * 40,
            "HCC_DATABASE_URL": "mysql+mysqldb://u:p@h/db",
            "HCC_LDAP_BIND_PASSWORD": "pw",
        },
    )
    assert s.auth.secret == b"e" * 40
    assert s.database.url == "mysql+mysqldb://u:p@h/db"
    assert s.ldap.bind_password == "pw"


def test_secrets_do_not_show_in_repr():
    s = parse_settings({**BASE_SETTINGS, "hcc.ldap.bind_password": "very-secret-pw"}, {})
    assert "very-secret-pw" not in repr(s) and "s" * 32 not in repr(s)


def test_the_shipped_ini_files_parse():
    from pathlib import Path

    from pyramid.paster import get_appsettings

    root = Path(__file__).resolve().parents[2]
    parse_settings(get_appsettings(str(root / "development.ini")), {})
    # production.ini holds no secret: it must fail without the environment and pass with it
    prod = get_appsettings(str(root / "production.ini"))
    with pytest.raises(SettingsError, match="hcc.database.url"):
        parse_settings(prod, {})
    parse_settings(prod, {"HCC_DATABASE_URL": "mysql+mysqldb://u:p@h/db", "HCC_AUTH_SECRET": "x" * 32})
