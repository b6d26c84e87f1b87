"""Production checks: files that hold secrets closed to other users, no development secret in production."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from .settings import Settings

# hcc.auth.secret values that this repository publishes (development.ini): a service using one would
# let anyone who read the repository forge the sealed credentials' keys
DEVELOPMENT_SECRETS = frozenset({"development-only-secret-do-not-use-in-production"})


class UnsafeDeployment(RuntimeError):
    """Start-up refused: a file open to other users, or a published secret, in a production setup."""


def is_production(settings: Settings) -> bool:
    """A shared MySQL/MariaDB registry is production; SQLite is a developer's machine."""
    return not settings.database.url.startswith("sqlite")


def open_to_others(path: str, what: str) -> str | None:
    """A problem if other users may read (or write) ``path``; None if it is private or missing."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    if mode & 0o007:
        return f"{what} {path} is open to other users (mode {stat.S_IMODE(mode):04o}); chmod o-rwx it"
    return None


def ini_problem(ini_path: str | None) -> str | None:
    """The ini holds (or may one day hold) the LDAP bind password and cluster settings."""
    return open_to_others(ini_path, "the ini file") if ini_path else None


def secret_problem(settings: Settings) -> str | None:
    if settings.auth.secret.decode() in DEVELOPMENT_SECRETS:
        return "hcc.auth.secret is the development secret published in development.ini: set HCC_AUTH_SECRET"
    return None


def sqlite_problem(settings: Settings) -> str | None:
    """The SQLite registry holds token hashes and sealed credentials (the service closes it at start)."""
    url = settings.database.url
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return None
    return open_to_others(url.removeprefix("sqlite:///").partition("?")[0], "the SQLite registry")


def ca_key_problem(settings: Settings) -> str | None:
    return open_to_others(settings.ssh.ca_key, "the SSH user CA key") if settings.ssh.ca_key else None


# (what, check, what passing means) for hcc-check: each check returns a problem or None
CHECKS: tuple[tuple[str, Callable[[Settings, str | None], str | None], str], ...] = (
    ("ini file", lambda settings, ini: ini_problem(ini), "closed to other users"),
    (
        "auth secret",
        lambda settings, ini: secret_problem(settings) if is_production(settings) else None,
        "not a published one (or a SQLite development setup)",
    ),
    ("sqlite file", lambda settings, ini: sqlite_problem(settings), "none, or closed to other users"),
    ("ca key file", lambda settings, ini: ca_key_problem(settings), "none, or closed to other users"),
)


def startup_problems(settings: Settings, ini_path: str | None) -> list[str]:
    """What start-up refuses in production: an ini open to other users and the development secret.

    (A CA key open to others is refused by ``load_ca_key`` in every setup; a SQLite file open to
    others is closed by ``db.make_engine``, with a warning.)
    """
    if not is_production(settings):
        return []
    return [p for p in (ini_problem(ini_path), secret_problem(settings)) if p]


def includeme(config) -> None:
    """Refuse to start on what ``startup_problems`` finds; the ini is PasteDeploy's ``__file__``."""
    settings = config.registry.hcc_settings
    problems = startup_problems(settings, config.registry.settings.get("hcc_ini_file"))
    if problems:
        raise UnsafeDeployment("refusing to start: " + "; ".join(problems))
