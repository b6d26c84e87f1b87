"""The hcc.* settings, parsed and validated once at start-up into frozen dataclasses."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

TRUE = {"true", "yes", "on", "1"}
FALSE = {"false", "no", "off", "0", ""}

# Secrets and the database URL may come from the environment, which wins over the ini, so that
# production.ini holds no secret (Warehouse does the same with DATABASE_URL and friends).
ENV_OVERRIDES = {
    "hcc.database.url": "HCC_DATABASE_URL",
    "hcc.auth.secret": "HCC_AUTH_SECRET",
    "hcc.ldap.bind_password": "HCC_LDAP_BIND_PASSWORD",
}


class SettingsError(ValueError):
    """A missing or malformed setting; the message names the key."""


class _Reader:
    """Typed access to the raw settings that names the key in every error."""

    def __init__(self, raw: Mapping[str, str], environ: Mapping[str, str]):
        self.raw = dict(raw)
        for key, var in ENV_OVERRIDES.items():
            if environ.get(var):
                self.raw[key] = environ[var]

    def str(self, key: str, default: str | None = None) -> str:
        value = self.raw.get(key)
        value = value.strip() if isinstance(value, str) else value
        if value in (None, ""):
            if default is None:
                hint = f" (or the environment variable {ENV_OVERRIDES[key]})" if key in ENV_OVERRIDES else ""
                raise SettingsError(f"setting {key} is required{hint}")
            return default
        return value

    def optional(self, key: str) -> str | None:
        value = (self.raw.get(key) or "").strip()
        return value or None

    def int(self, key: str, default: int, *, minimum: int = 0) -> int:
        value = self.raw.get(key)
        if value in (None, ""):
            return default
        try:
            number = int(str(value).strip())
        except ValueError:
            raise SettingsError(f"setting {key} must be an integer, not {value!r}") from None
        if number < minimum:
            raise SettingsError(f"setting {key} must be at least {minimum}, not {number}")
        return number

    def float(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.raw.get(key)
        if value in (None, ""):
            return default
        try:
            number = float(str(value).strip())
        except ValueError:
            raise SettingsError(f"setting {key} must be a number, not {value!r}") from None
        if number < minimum:
            raise SettingsError(f"setting {key} must be at least {minimum}, not {number}")
        return number

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw.get(key)
        if value is None:
            return default
        text = str(value).strip().lower()
        if text in TRUE:
            return True
        if text in FALSE:
            return False
        raise SettingsError(f"setting {key} must be true or false, not {value!r}")

    def list(self, key: str) -> tuple[str, ...]:
        return tuple((self.raw.get(key) or "").split())

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.str(key, default)
        if value not in choices:
            raise SettingsError(f"setting {key} must be one of {', '.join(choices)}, not {value!r}")
        return value


@dataclass(frozen=True)
class DatabaseSettings:
    url: str
    pool_size: int = 5
    echo: bool = False


@dataclass(frozen=True)
class LdapSettings:
    uri: str
    bind_dn: str | None
    bind_password: str | None = field(repr=False)
    user_base: str
    # {login} is replaced by the escaped login name
    user_filter: str
    group_base: str
    # {uid} and {dn} are replaced by the escaped login name and the user's DN
    group_filter: str
    # a directory's own lock flag besides OpenLDAP ppolicy, e.g. nsAccountLock (389-DS, FreeIPA)
    lock_attribute: str | None
    lock_value: str
    fullname_attribute: str
    email_attribute: str
    description_attribute: str
    timeout: float
    pool_size: int


@dataclass(frozen=True)
class AuthSettings:
    secret: bytes = field(repr=False)
    idle_timeout: int
    max_age: int
    throttle_window: int
    throttle_max_per_user: int
    throttle_max_per_address: int
    # a POSIX-style login name; anything else is refused before it reaches LDAP
    username_pattern: str


@dataclass(frozen=True)
class ApiSettings:
    cors_origins: tuple[str, ...]
    max_body_bytes: int
    # client addresses from X-Forwarded-For are believed only from these proxies
    trusted_proxies: tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings
    ldap: LdapSettings
    auth: AuthSettings
    api: ApiSettings


def parse_database(r: _Reader) -> DatabaseSettings:
    url = r.str("hcc.database.url")
    if "://" not in url:
        raise SettingsError(f"setting hcc.database.url is not a database URL: {url.split(':', 1)[0]!r}...")
    return DatabaseSettings(
        url=url,
        pool_size=r.int("hcc.database.pool_size", 5, minimum=1),
        echo=r.bool("hcc.database.echo", False),
    )


def parse_ldap(r: _Reader) -> LdapSettings:
    uri = r.str("hcc.ldap.uri")
    if not uri.startswith(("ldap://", "ldaps://")):
        raise SettingsError(f"setting hcc.ldap.uri must start with ldap:// or ldaps://, not {uri!r}")
    user_filter = r.str("hcc.ldap.user_filter", "(&(objectClass=posixAccount)(uid={login}))")
    if "{login}" not in user_filter:
        raise SettingsError("setting hcc.ldap.user_filter must contain {login}")
    group_filter = r.str(
        "hcc.ldap.group_filter",
        "(|(&(objectClass=posixGroup)(memberUid={uid}))(&(objectClass=groupOfNames)(member={dn})))",
    )
    return LdapSettings(
        uri=uri,
        bind_dn=r.optional("hcc.ldap.bind_dn"),
        bind_password=r.optional("hcc.ldap.bind_password"),
        user_base=r.str("hcc.ldap.user_base"),
        user_filter=user_filter,
        group_base=r.str("hcc.ldap.group_base"),
        group_filter=group_filter,
        lock_attribute=r.optional("hcc.ldap.lock_attribute"),
        lock_value=r.str("hcc.ldap.lock_value", "TRUE"),
        fullname_attribute=r.str("hcc.ldap.fullname_attribute", "cn"),
        email_attribute=r.str("hcc.ldap.email_attribute", "mail"),
        description_attribute=r.str("hcc.ldap.description_attribute", "description"),
        timeout=r.float("hcc.ldap.timeout", 5.0, minimum=0.1),
        pool_size=r.int("hcc.ldap.pool_size", 10, minimum=1),
    )


def parse_auth(r: _Reader) -> AuthSettings:
    secret = r.str("hcc.auth.secret")
    if len(secret) < 32:
        raise SettingsError(
            "setting hcc.auth.secret must be at least 32 characters (e.g. `openssl rand -hex 32`)"
        )
    idle = r.int("hcc.auth.idle_timeout", 6 * 3600, minimum=60)
    max_age = r.int("hcc.auth.max_age", 24 * 3600, minimum=60)
    if idle > max_age:
        raise SettingsError("setting hcc.auth.idle_timeout must not exceed hcc.auth.max_age")
    return AuthSettings(
        secret=secret.encode(),
        idle_timeout=idle,
        max_age=max_age,
        throttle_window=r.int("hcc.auth.throttle_window", 300, minimum=1),
        throttle_max_per_user=r.int("hcc.auth.throttle_max_per_user", 5, minimum=1),
        throttle_max_per_address=r.int("hcc.auth.throttle_max_per_address", 20, minimum=1),
        username_pattern=r.str("hcc.auth.username_pattern", r"^[a-z_][a-z0-9_.-]{0,31}$"),
    )


def parse_api(r: _Reader) -> ApiSettings:
    origins = r.list("hcc.api.cors_origins")
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise SettingsError(
                f"setting hcc.api.cors_origins: {origin!r} is not an origin (scheme://host[:port])"
            )
    return ApiSettings(
        cors_origins=origins,
        max_body_bytes=r.int("hcc.api.max_body_bytes", 1024 * 1024, minimum=1024),
        trusted_proxies=r.list("hcc.api.trusted_proxies"),
    )


def parse_settings(raw: Mapping[str, str], environ: Mapping[str, str] | None = None) -> Settings:
    """Parse every hcc.* key; raise SettingsError naming the first bad key."""
    r = _Reader(raw, os.environ if environ is None else environ)
    return Settings(database=parse_database(r), ldap=parse_ldap(r), auth=parse_auth(r), api=parse_api(r))


def includeme(config) -> None:
    """Parse the settings once; every other part reads ``registry.hcc_settings``."""
    config.registry.hcc_settings = parse_settings(config.get_settings())
