"""Authentication: the LDAP directory facade, bearer-token sessions and the security policy."""

from .directory import Directory
from .policy import BearerTokenSecurityPolicy
from .sessions import LoginThrottle, SessionStore


def includeme(config) -> None:
    settings = config.registry.hcc_settings
    config.registry.hcc_directory = Directory.from_settings(settings)
    config.registry.hcc_sessions = SessionStore.from_settings(settings)
    config.registry.hcc_throttle = LoginThrottle.from_settings(settings)
    config.set_security_policy(BearerTokenSecurityPolicy())
