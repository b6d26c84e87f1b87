"""The registry's tables; only alembic migrations create or change them."""

from .auth import AuditEvent, LoginAttempt, ThrottleKey, UserSession
from .jobs import JobSubmission
from .links import DownloadLink
from .meta import Base
from .notebooks import Notebook, NotebookPort, NotebookSlot
from .operations import FileOperation
from .uploads import UploadTemp

__all__ = [
    "AuditEvent",
    "Base",
    "DownloadLink",
    "FileOperation",
    "JobSubmission",
    "LoginAttempt",
    "Notebook",
    "NotebookPort",
    "NotebookSlot",
    "ThrottleKey",
    "UploadTemp",
    "UserSession",
]
