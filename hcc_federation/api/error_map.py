"""The one table from failure types to HTTP: status, envelope location and a stable ``code``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ..auth.directory import (
    AccountLocked,
    DirectoryUnavailable,
    InvalidCredentials,
    PasswordRefused,
    UnknownUser,
    WrongCurrentPassword,
)
from ..auth.sessions import TooManyAttempts
from ..bulkhead import ClusterBusy
from ..clusters.registry import ClusterCommandFailed, MissingCredential, UnknownCluster
from ..errors import DomainError, InvalidArgument
from ..files.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    FilesystemMisconfigured,
    InsufficientStorage,
    InvalidMove,
    IsADirectory,
    LinkGone,
    LinkLost,
    LinkTimeout,
    ListingTooLarge,
    NameNotUtf8,
    NoSuchPath,
    NotADirectory,
    NotARegularFile,
    PathError,
    PayloadTooLarge,
    PermissionDenied,
    PreconditionFailed,
    RangeNotSatisfiable,
    RemoteFileError,
    TooBigForRequest,
    WriteFailed,
)
from ..files.upload import ClientDisconnected, UnsupportedMediaType
from ..jobs.errors import (
    JobError,
    JobFinished,
    JobForbidden,
    JobNotFound,
    OutputNotFound,
    OutputUnknown,
    SlurmError,
    SlurmRefused,
    SlurmUnavailable,
)
from ..notebooks.errors import (
    NoFreePort,
    NotebookCommandFailed,
    NotebookJobRefused,
    NotebookLimitReached,
    NotebookNotFound,
)
from ..operations.errors import OperationFinished, OperationNotFound, WorkerNotStarted
from ..remote.errors import (
    ClusterUnreachable,
    CredentialsRefused,
    HostKeyRejected,
    OutputTooLarge,
    RemoteError,
    RemoteTimeout,
)


@dataclass(frozen=True)
class Mapping:
    """How one failure type is answered.

    ``location`` None means "where the request carried the field": the URL path, the query
    string, a header or the body (see ``api.errors.field_location``).
    """

    status: int
    code: str
    location: str | None = None
    description: str = ""


# Walked along each exception's MRO: a subclass is answered like its nearest listed ancestor, so a
# new error kind needs a row only when it must differ. Codes are a contract: never rename one.
ERROR_MAP: dict[type[BaseException], Mapping] = {
    DomainError: Mapping(500, "internal_error", "body", "an unexpected failure"),
    InvalidArgument: Mapping(400, "invalid_argument", None, "an argument was refused before anything ran"),
    # auth
    InvalidCredentials: Mapping(401, "invalid_credentials", "header", "wrong username or password"),
    MissingCredential: Mapping(401, "missing_credential", "header", "the session holds no credential here"),
    AccountLocked: Mapping(403, "account_locked", "body", "the account is locked"),
    UnknownUser: Mapping(404, "user_not_found", "path", "the user is no longer in the directory"),
    WrongCurrentPassword: Mapping(400, "wrong_current_password", "body", "the current password is wrong"),
    PasswordRefused: Mapping(400, "password_refused", "body", "the password policy refused it"),
    TooManyAttempts: Mapping(429, "too_many_attempts", "body", "too many failed logins; see Retry-After"),
    DirectoryUnavailable: Mapping(503, "directory_unavailable", "body", "the LDAP directory is unavailable"),
    # clusters and the SSH link
    UnknownCluster: Mapping(404, "cluster_not_found", "path", "no cluster of that name"),
    ClusterBusy: Mapping(503, "cluster_busy", "path", "the cluster has its share of requests running"),
    ClusterCommandFailed: Mapping(502, "cluster_command_failed", "path", "a command on the cluster failed"),
    FilesystemMisconfigured: Mapping(
        500, "filesystem_misconfigured", "path", "a file system is misconfigured"
    ),
    RemoteError: Mapping(502, "remote_error", "path", "talking to the cluster failed"),
    ClusterUnreachable: Mapping(503, "cluster_unreachable", "path", "the cluster cannot be reached"),
    HostKeyRejected: Mapping(503, "host_key_rejected", "path", "the cluster's host key is not the known one"),
    CredentialsRefused: Mapping(
        403, "credentials_refused", "path", "the cluster refused the user's credential"
    ),
    RemoteTimeout: Mapping(504, "remote_timeout", "path", "the cluster did not answer in time"),
    OutputTooLarge: Mapping(502, "output_too_large", "path", "a command wrote more than the output cap"),
    LinkLost: Mapping(503, "cluster_unreachable", "path", "the connection to the cluster was lost"),
    LinkTimeout: Mapping(504, "remote_timeout", "path", "the cluster did not answer in time"),
    # jobs
    SlurmError: Mapping(502, "slurm_error", "path", "Slurm failed or printed what cannot be read"),
    SlurmUnavailable: Mapping(503, "slurm_unavailable", "path", "Slurm's controller or accounting is down"),
    SlurmRefused: Mapping(400, "job_refused", "body", "sbatch refused the job"),
    JobError: Mapping(502, "slurm_error", "path", "Slurm failed or printed what cannot be read"),
    JobNotFound: Mapping(404, "job_not_found", "path", "no such job on this cluster"),
    JobForbidden: Mapping(403, "job_forbidden", "path", "the job belongs to another user"),
    JobFinished: Mapping(409, "job_finished", "path", "the job already finished"),
    OutputUnknown: Mapping(404, "output_unknown", "querystring", "where the job's output goes is unknown"),
    OutputNotFound: Mapping(404, "output_not_found", "querystring", "no output file (yet)"),
    # notebooks
    NotebookNotFound: Mapping(404, "notebook_not_found", "path", "no such notebook of yours on this cluster"),
    NotebookLimitReached: Mapping(429, "notebook_limit", "path", "you hold the most live notebooks allowed"),
    NoFreePort: Mapping(409, "no_free_port", "path", "every notebook port on the host is in use"),
    NotebookCommandFailed: Mapping(502, "notebook_command_failed", "path", "starting or stopping it failed"),
    NotebookJobRefused: Mapping(400, "notebook_refused", "body", "sbatch refused the notebook's job"),
    # files
    PathError: Mapping(500, "remote_file_error", None, "the cluster refused a file operation"),
    RemoteFileError: Mapping(500, "remote_file_error", None, "the cluster refused a file operation"),
    NoSuchPath: Mapping(404, "no_such_path", None, "no such file or directory"),
    PermissionDenied: Mapping(403, "permission_denied", None, "permission denied"),
    AlreadyExists: Mapping(409, "already_exists", None, "the path already exists"),
    NotADirectory: Mapping(409, "not_a_directory", None, "a directory was expected"),
    IsADirectory: Mapping(409, "is_a_directory", None, "a file was expected, not a directory"),
    DirectoryNotEmpty: Mapping(409, "directory_not_empty", None, "the directory is not empty"),
    NotARegularFile: Mapping(409, "not_a_regular_file", None, "a device, socket or fifo"),
    InvalidMove: Mapping(409, "invalid_move", None, "a directory cannot go into itself"),
    PreconditionFailed: Mapping(412, "precondition_failed", "header", "the file changed (If-Match)"),
    PayloadTooLarge: Mapping(413, "payload_too_large", "body", "the body is larger than allowed"),
    RangeNotSatisfiable: Mapping(416, "range_not_satisfiable", "header", "the range is past the end"),
    InsufficientStorage: Mapping(507, "insufficient_storage", None, "no space left, or over quota"),
    ListingTooLarge: Mapping(413, "listing_too_large", None, "too many entries for one answer: use pages"),
    NameNotUtf8: Mapping(502, "name_not_utf8", None, "the cluster holds a name that is not UTF-8"),
    WriteFailed: Mapping(502, "write_failed", None, "the cluster failed a write without saying why"),
    LinkGone: Mapping(404, "link_not_found", "path", "no such download link, or it expired"),
    ClientDisconnected: Mapping(400, "client_disconnected", "body", "the body ended early"),
    UnsupportedMediaType: Mapping(
        415, "unsupported_media_type", "header", "the body's media type is refused"
    ),
    # long file operations
    OperationNotFound: Mapping(404, "operation_not_found", "path", "no such operation of the caller's"),
    OperationFinished: Mapping(409, "operation_finished", "path", "the operation already ended"),
    WorkerNotStarted: Mapping(
        502, "operation_not_started", "path", "the cluster did not start the operation"
    ),
    TooBigForRequest: Mapping(
        413, "use_an_operation", None, "too big for a synchronous request: use POST .../operations"
    ),
    # the registry database (SQLAlchemy's, not ours: raised from the driver or the pool)
    DBAPIError: Mapping(503, "database_unavailable", "body", "the registry database is unavailable"),
    PoolTimeout: Mapping(503, "database_unavailable", "body", "every database connection is in use"),
}


@dataclass(frozen=True)
class HttpMapping:
    """How a plain HTTP error (a route that does not exist, a method, Cornice's checks) is answered."""

    code: str
    location: str
    name: str
    description: str


# The answers that no domain error raises: plain HTTP errors, Cornice's validation, a bug's 500.
HTTP_ERRORS: dict[int, HttpMapping] = {
    400: HttpMapping("validation_failed", "url", "path", "the request does not match the route's schema"),
    401: HttpMapping("unauthenticated", "header", "Authorization", "no valid bearer token"),
    403: HttpMapping(
        "forbidden", "header", "Authorization", "the request is not allowed (e.g. a CORS origin)"
    ),
    404: HttpMapping("not_found", "url", "path", "no such route"),
    405: HttpMapping("method_not_allowed", "method", "method", "the route does not take this method"),
    406: HttpMapping("not_acceptable", "header", "Accept", "no acceptable media type"),
    413: HttpMapping("payload_too_large", "body", "body", "the body is larger than allowed"),
    415: HttpMapping("unsupported_media_type", "header", "Content-Type", "the body's media type is refused"),
    500: HttpMapping("internal_error", "body", "server", "an unexpected failure; it has been logged"),
}
OTHER_HTTP_ERROR = HttpMapping("http_error", "url", "path", "another HTTP error")


def mapping_for(exc: BaseException) -> Mapping | None:
    """The row for ``exc``'s class or its nearest listed ancestor; None if nothing maps it."""
    for cls in type(exc).__mro__:
        row = ERROR_MAP.get(cls)
        if row is not None:
            return row
    return None


def http_mapping(status: int) -> HttpMapping:
    """How a plain HTTP error of this status is answered."""
    return HTTP_ERRORS.get(status, OTHER_HTTP_ERROR)


def code_for_status(status: int) -> str:
    """The code of a plain HTTP error of this status (``http_error`` for one not listed)."""
    return http_mapping(status).code


def all_codes() -> dict[str, str]:
    """Every code the API may answer, with what it means: the OpenAPI document lists them."""
    codes = {row.code: row.description for row in ERROR_MAP.values()}
    for row in (*HTTP_ERRORS.values(), OTHER_HTTP_ERROR):
        codes.setdefault(row.code, row.description)
    return dict(sorted(codes.items()))
