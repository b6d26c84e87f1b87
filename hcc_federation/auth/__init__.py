"""Authentication: the LDAP directory facade, bearer-token sessions and the security policy."""

from .directory import Directory
from .policy import BearerTokenSecurityPolicy
from .sessions import LoginThrottle, SessionStore


def includeme(config) -> None:
    settings = config.registry.hcc_settings
    config.registry.hcc_directory = Directory(settings.ldap)
    config.registry.hcc_sessions = SessionStore(settings.auth)
    config.registry.hcc_throttle = LoginThrottle(settings.auth)
    config.set_security_policy(BearerTokenSecurityPolicy())
