"""Cluster file systems as the user sees them: path rules, metadata, streamed reads, atomic writes, and
the routes that serve them.

The domain modules (errors, paths, metadata, listing, transfer, operations) never import Pyramid; the
routes (views, links, with schemas, download and upload) do. The domain's public names are re-exported
here, so that ``from hcc_federation import files`` then ``files.write_file(...)`` reads as one API.
"""

from __future__ import annotations

from .errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InsufficientStorage,
    InvalidMove,
    IsADirectory,
    LinkLost,
    LinkTimeout,
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
    classify_failure,
    link_failure,
    map_command_error,
    map_sftp_error,
)
from .listing import (
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    ListingSnapshots,
    check_paging,
    list_directory,
    page_rows,
)
from .metadata import (
    SNIFF_BYTES,
    FileVersion,
    Runner,
    file_etag,
    file_type,
    file_version,
    get_metadata,
    guess_mime,
    home_directory,
    looks_like_text,
    lstat_or_none,
    lstat_path,
    parse_getent,
    parse_version,
    require_regular,
    version_argv,
)
from .operations import copy, copy_argv, delete, make_directory, move, remove_tree_argv, touch
from .paths import MAX_NAME_BYTES, MAX_PATH_BYTES, CheckedPath, resolve_filesystems, validate_path
from .transfer import (
    DEFAULT_CHUNK,
    FULL_MARGIN,
    READ_WINDOW,
    STALE_TEMP_MINUTES,
    SWEEP_INTERVAL,
    TEMP_PREFIX,
    create_exclusive,
    read_chunks,
    sweep_stale_temp_argv,
    sweep_stale_temp_files,
    write_file,
)

__all__ = [
    "CheckedPath",
    "DEFAULT_CHUNK",
    "DEFAULT_LIST_LIMIT",
    "FULL_MARGIN",
    "MAX_LIST_LIMIT",
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "READ_WINDOW",
    "SNIFF_BYTES",
    "STALE_TEMP_MINUTES",
    "SWEEP_INTERVAL",
    "TEMP_PREFIX",
    "AlreadyExists",
    "DirectoryNotEmpty",
    "FileVersion",
    "InsufficientStorage",
    "InvalidMove",
    "IsADirectory",
    "LinkLost",
    "LinkTimeout",
    "NameNotUtf8",
    "NoSuchPath",
    "NotADirectory",
    "NotARegularFile",
    "PathError",
    "PayloadTooLarge",
    "PermissionDenied",
    "PreconditionFailed",
    "RangeNotSatisfiable",
    "RemoteFileError",
    "Runner",
    "TooBigForRequest",
    "WriteFailed",
    "check_paging",
    "classify_failure",
    "copy",
    "copy_argv",
    "create_exclusive",
    "delete",
    "file_etag",
    "file_type",
    "file_version",
    "get_metadata",
    "guess_mime",
    "home_directory",
    "includeme",
    "link_failure",
    "list_directory",
    "looks_like_text",
    "lstat_or_none",
    "lstat_path",
    "make_directory",
    "map_command_error",
    "map_sftp_error",
    "move",
    "page_rows",
    "ListingSnapshots",
    "parse_getent",
    "parse_version",
    "read_chunks",
    "remove_tree_argv",
    "require_regular",
    "resolve_filesystems",
    "sweep_stale_temp_argv",
    "sweep_stale_temp_files",
    "touch",
    "validate_path",
    "version_argv",
    "write_file",
]


def includeme(config) -> None:
    """The file routes: metadata, content, uploads, operations and download links."""
    ttl = config.registry.hcc_settings.files.listing_snapshot
    config.registry.hcc_listing_snapshots = ListingSnapshots(ttl)
    config.scan(".views")
    config.scan(".links")
