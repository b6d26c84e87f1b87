"""Typed failures of file operations and the mapping of SFTP and command failures onto them."""

from __future__ import annotations

import errno
import stat

import paramiko

from hcc_federation.errors import DomainError
from hcc_federation.remote.result import CommandResult

_MESSAGE_CAP = 300


# --------------------------------------------------------------------------------------------- errors


class PathError(DomainError):
    """A failure about one path on the cluster; ``path`` names it for logs and callers."""

    field = "path"

    def __init__(self, description: str, *, path: str | None = None, field: str | None = None):
        super().__init__(description, field=field)
        self.path = path


class NoSuchPath(PathError):
    pass


class PermissionDenied(PathError):
    pass


class AlreadyExists(PathError):
    pass


class NotADirectory(PathError):
    pass


class IsADirectory(PathError):
    pass


class DirectoryNotEmpty(PathError):
    pass


class NotARegularFile(PathError):
    """A device, socket or fifo where a regular file was expected."""


class InvalidMove(PathError):
    """Moving or copying a directory into itself."""


class PreconditionFailed(PathError):
    """The file changed since the client read it (its ETag no longer matches If-Match)."""

    field = "If-Match"


class PayloadTooLarge(PathError):
    """The body is larger than the configured upload limit."""

    field = "body"


class RangeNotSatisfiable(PathError):
    """The requested byte range starts past the end of the file; ``size`` is the file's size."""

    field = "Range"

    def __init__(self, description: str, *, path: str | None = None, size: int | None = None):
        super().__init__(description, path=path)
        self.size = size


class TooBigForRequest(PathError):
    """A synchronous copy or recursive delete past hcc.operations.sync_max_bytes or sync_max_files:
    it would outlive the request, so the caller is told to start an operation instead."""

    def __init__(self, description: str, *, path: str | None = None, limit: int = 0):
        super().__init__(description, path=path)
        self.limit = limit


class InsufficientStorage(PathError):
    """No space left on the device, or the user's quota is exhausted."""


class NameNotUtf8(PathError):
    """The cluster holds a name that is not UTF-8, which JSON cannot carry faithfully.

    paramiko decodes every name as strict UTF-8; rather than a 500, say which directory holds it.
    """


class ListingTooLarge(PathError):
    """A whole listing (all=true) of a directory of more entries than one answer holds: list it in pages."""

    field = "all"


class RemoteFileError(PathError):
    """Anything the cluster refused that we could not classify; the description keeps its words."""


class WriteFailed(PathError):
    """The cluster answered a write with a plain SFTP "Failure" and its file system is not full:
    SFTP v3 does not say why (EIO, EFBIG, a quota...), so it is the cluster's failure, not a full disk."""


class LinkGone(DomainError):
    """A download link that is unknown, expired, or whose session ended: the same answer, so a
    probe learns nothing."""

    field = "token"


class FilesystemMisconfigured(DomainError):
    """A cluster's hcc.files file system template cannot be resolved for this user."""

    field = "cluster"


class LinkLost(DomainError):
    """The SSH connection broke under an SFTP request (reset, closed, a protocol failure)."""

    field = "cluster"


class LinkTimeout(DomainError):
    """The cluster did not answer an SFTP request within the command timeout."""

    field = "cluster"


def link_failure(exc: BaseException, path: str, action: str) -> DomainError | None:
    """The typed error when ``exc`` is a failure of the SSH link rather than an answer of the server.

    paramiko raises EOFError or SSHException when the transport dies, socket errors when the TCP
    connection is reset, and ``socket.timeout`` (a TimeoutError, so an OSError without errno) when a
    request waits past the channel's timeout. None of them is the file system's answer: before this,
    a cut link gave a 500 (EOFError) and a blackholed one a 507 "no space left?" after 61 s.
    """
    if isinstance(exc, TimeoutError):
        return LinkTimeout(f"the cluster did not answer in time while trying to {action} {path}")
    if isinstance(exc, EOFError | paramiko.SSHException | ConnectionError):
        return LinkLost(f"the connection to the cluster was lost while trying to {action} {path}")
    return None


# -------------------------------------------------------------------------------- error mapping


def map_sftp_error(exc: OSError, path: str, action: str) -> DomainError:
    """paramiko's errors (errno from the SFTP status) -> typed errors naming the path."""
    failure = link_failure(exc, path, action)
    if failure is not None:
        return failure
    if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
        return NoSuchPath(f"no such file or directory: {path}", path=path)
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(f"permission denied: {path}", path=path)
    return RemoteFileError(f"the cluster could not {action} {path}: {exc}", path=path)


def classify_failure(sftp: paramiko.SFTPClient, exc: OSError, path: str, action: str) -> DomainError:
    """SFTP v3 answers EEXIST, EISDIR, ENOTEMPTY, ENOSPC... all as "Failure": look at the path to tell."""
    mapped = map_sftp_error(exc, path, action)
    if type(mapped) is not RemoteFileError:
        return mapped
    try:
        attr = sftp.lstat(path)
    except OSError:
        return mapped
    if action in ("create the directory", "touch"):
        return AlreadyExists(f"already exists: {path}", path=path)
    if action == "read" and stat.S_ISDIR(attr.st_mode or 0):
        return IsADirectory(f"is a directory: {path}", path=path)
    if action == "create a file in" and not stat.S_ISDIR(attr.st_mode or 0):
        return NotADirectory(f"not a directory: {path}", path=path)
    return mapped


# Most specific first: a run that hit a full disk also reports many failed files.
_STDERR_ERRORS: tuple[tuple[str, type[PathError], str], ...] = (
    ("No space left on device", InsufficientStorage, "no space left on the device"),
    ("Disk quota exceeded", InsufficientStorage, "disk quota exceeded"),
    ("into itself", InvalidMove, "cannot copy a directory into itself"),
    ("Permission denied", PermissionDenied, "permission denied"),
    ("Operation not permitted", PermissionDenied, "operation not permitted"),
    ("Not a directory", NotADirectory, "not a directory"),
    ("No such file or directory", NoSuchPath, "no such file or directory"),
    ("File exists", AlreadyExists, "already exists"),
    ("cannot overwrite", AlreadyExists, "already exists"),
)


def map_command_error(result: CommandResult, path: str) -> DomainError:
    """A failed ``cp``/``rm`` -> a typed error by its stderr (C locale messages), else RemoteFileError."""
    stderr = result.error_text()
    detail = stderr[:_MESSAGE_CAP] or f"exit status {result.exit_status}"
    for needle, error, what in _STDERR_ERRORS:
        if needle in stderr:
            return error(f"{what}: {path} ({detail})", path=path)
    # skip "env LC_ALL=C" to name the command that failed
    command = next((arg for arg in result.argv if arg != "env" and "=" not in arg), "command")
    return RemoteFileError(f"{command} failed on {path}: {detail}", path=path)
