"""Production checks at start-up: the Host header, files open to other users, the development secret."""

import pytest
from pyramid.paster import get_app
from webtest import TestApp

from hcc_federation.api.tweens import host_allowed, host_name
from hcc_federation.deployment import UnsafeDeployment
from hcc_federation.settings import SettingsError, parse_settings
from tests.helpers import BASE_SETTINGS

MYSQL = "mysql+mysqldb://u:p@127.0.0.1:9/x?charset=utf8mb4"  # never connected at start-up


def _ini(tmp_path, settings: dict, mode: int = 0o600):
    ini = tmp_path / "service.ini"
    ini.write_text(
        "[app:main]\nuse = egg:hcc-federation\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
    )
    ini.chmod(mode)
    return ini


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("Example.ORG:8443", "example.org"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]:443", "[::1]"),
        ("[::1]", "[::1]"),
    ],
)
def test_host_name_drops_the_port(host, name):
    assert host_name(host) == name


def test_host_allowed_exact_names_and_subdomains():
    allowed = ("api.example.org", ".hpc.example.org", "[::1]")
    assert host_allowed("api.example.org:443", allowed)
    assert host_allowed("a.hpc.example.org", allowed) and host_allowed("hpc.example.org", allowed)
    assert host_allowed("[::1]:8443", allowed)
    assert not host_allowed("evil.example.org", allowed)
    assert not host_allowed("api.example.org.evil.net", allowed)
    assert not host_allowed("xhpc.example.org", allowed)
    assert not host_allowed("", allowed)


def test_allowed_hosts_takes_names_only():
    with pytest.raises(SettingsError, match="hcc.api.allowed_hosts"):
        parse_settings({**BASE_SETTINGS, "hcc.api.allowed_hosts": "https://api.example.org"}, {})
    settings = parse_settings({**BASE_SETTINGS, "hcc.api.allowed_hosts": "API.example.org [::1]"}, {})
    assert settings.api.allowed_hosts == ("api.example.org", "[::1]")


def test_a_host_outside_allowed_hosts_is_refused_before_routing(tmp_path):
    ini = _ini(
        tmp_path,
        {
            **BASE_SETTINGS,
            "hcc.database.url": f"sqlite:///{tmp_path}/r.sqlite",
            "hcc.api.allowed_hosts": "api.example.org",
        },
    )
    app = TestApp(get_app(str(ini), "main"))
    refused = app.get("/api/v1/openapi.json", headers={"Host": "evil.example.org"}, status=400)
    assert refused.json["errors"][0]["name"] == "Host"
    assert "evil.example.org" in refused.json["errors"][0]["description"]
    # even a URL that the next tween would refuse: the Host is checked first
    assert (
        app.get("/api/v1/%ff", headers={"Host": "evil.example.org"}, status=400).json["errors"][0]["name"]
        == "Host"
    )
    app.get("/api/v1/openapi.json", headers={"Host": "api.example.org:8443"}, status=200)


def test_production_refuses_an_ini_that_others_can_read(tmp_path):
    ini = _ini(tmp_path, {**BASE_SETTINGS, "hcc.database.url": MYSQL}, mode=0o644)
    with pytest.raises(
        UnsafeDeployment, match=r"the ini file .*service.ini is open to other users \(mode 0644\)"
    ):
        get_app(str(ini), "main")
    ini.chmod(0o640)  # the group's read may be an admin's choice (e.g. the service's group)
    get_app(str(ini), "main")


def test_production_refuses_the_development_secret(tmp_path):
    secret = "development-only-secret-do-not-use-in-production"
    ini = _ini(tmp_path, {**BASE_SETTINGS, "hcc.database.url": MYSQL, "hcc.auth.secret": secret})
    with pytest.raises(UnsafeDeployment, match="development secret"):
        get_app(str(ini), "main")


def test_development_on_sqlite_keeps_its_secret_and_a_readable_ini(tmp_path):
    secret = "development-only-secret-do-not-use-in-production"
    settings = {
        **BASE_SETTINGS,
        "hcc.database.url": f"sqlite:///{tmp_path}/r.sqlite",
        "hcc.auth.secret": secret,
    }
    get_app(str(_ini(tmp_path, settings, mode=0o644)), "main")
