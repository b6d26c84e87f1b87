"""Authentication: the LDAP directory facade, bearer-token sessions, logging in and the security policy."""

import functools

from .custody import session_credential
from .directory import Directory
from .login import LoginService
from .policy import AUTHENTICATED, BearerTokenSecurityPolicy
from .sessions import LoginThrottle, SessionStore


def includeme(config) -> None:
    registry = config.registry
    settings = registry.hcc_settings
    registry.hcc_directory = Directory.from_settings(settings)
    registry.hcc_sessions = SessionStore.from_settings(settings)
    registry.hcc_throttle = LoginThrottle.from_settings(settings)
    registry.hcc_login = LoginService.from_settings(
        settings,
        throttle=registry.hcc_throttle,
        directory=registry.hcc_directory,
        sessions=registry.hcc_sessions,
        dbsession_factory=registry.hcc_dbsession_factory,
        # reads the cluster registry and the CA key at each login: .clusters is included after .auth
        credential=functools.partial(session_credential, registry),
    )
    config.set_security_policy(BearerTokenSecurityPolicy())
    # Every view needs a live session unless it says permission=NO_PERMISSION_REQUIRED: a view
    # added without a thought for access is private, not public. (Exception views are exempt.)
    config.set_default_permission(AUTHENTICATED)
