"""The registry's tables; only alembic migrations create or change them."""

from .auth import AuditEvent, LoginAttempt, UserSession
from .meta import Base

__all__ = ["AuditEvent", "Base", "LoginAttempt", "UserSession"]
