"""Cluster file systems as the caller: metadata, listings, streamed downloads and uploads, operations."""

from __future__ import annotations

import logging
import posixpath
import stat
from collections.abc import Callable
from contextlib import closing
from typing import Any

from cornice import Service
from cornice.validators import colander_body_validator

from .. import files
from ..api.docs import documented
from ..api.responses import encoded_json, no_content
from ..api.schemas import querystring
from ..clusters import ClusterAccess
from ..errors import InvalidArgument
from ..operations.progress import parse_du
from ..operations.worker import count_argv, size_argv
from .download import serve_file
from .errors import FilesystemMisconfigured
from .leftovers import UploadRecords
from .schemas import (
    ENTRY_OUT,
    FILE_CONTENT,
    METADATA_OUT,
    UPLOAD_FORM,
    UPLOAD_OUT,
    DeleteQuery,
    ListQuery,
    MkdirBody,
    MoveBody,
    PathBody,
    PathQuery,
    UploadQuery,
)
from .upload import body_chunks, form_parts, multipart_boundary, part_filename

log = logging.getLogger(__name__)

BASE = "/api/v1/clusters/{cluster}/files"
file_metadata = Service(
    name="files", path=BASE, description="Metadata, listings and deletion of cluster files"
)
file_content = Service(name="file_content", path=BASE + "/content", description="A file's bytes")
file_upload = Service(name="file_upload", path=BASE + "/upload", description="Upload files into a directory")
file_mkdir = Service(name="file_mkdir", path=BASE + "/mkdir", description="Create a directory")
file_touch = Service(name="file_touch", path=BASE + "/touch", description="Create a file or update its time")
file_move = Service(name="file_move", path=BASE + "/move", description="Rename or move a file or directory")
file_copy = Service(
    name="file_copy", path=BASE + "/copy", description="Copy a file or directory on the cluster"
)


def upload_records(request, access: ClusterAccess) -> UploadRecords:
    """The record of this request's temporary upload files, for hcc-cleanup to find what a dead
    link leaves (files.leftovers)."""
    factory = request.registry.hcc_dbsession_factory
    return UploadRecords(factory, request.identity.username, access.cluster.name)


def checked_path(value: str, *, name: str = "path") -> str:
    return files.validate_path(value, name=name)


# ------------------------------------------------------------------------------------- helpers


def cluster_filesystems(request, access: ClusterAccess) -> list[dict[str, str]]:
    """The cluster's named file systems resolved for the caller: [{"name", "path"}].

    ``$HOME`` costs an SFTP round trip once per pooled connection (SFTP starts in the home
    directory; see files.home_directory) and ``$GROUP`` a command (``id -gn``); neither is asked
    for unless a template uses it.
    """
    cluster = access.cluster
    templates = dict(cluster.settings.filesystems)
    joined = " ".join(templates.values())
    username = request.identity.username
    home = group = ""
    if "HOME" in joined:
        with access.sftp() as sftp:
            home = files.home_directory(sftp)
    if "GROUP" in joined:
        result = access.run(["id", "-gn"])
        group = result.text().strip()
        if not result.ok or not group:
            raise FilesystemMisconfigured(
                f"id -gn failed on cluster {cluster.name}: {result.error_text()[:200]}"
            )
    try:
        return files.resolve_filesystems(templates, user=username, home=home, group=group)
    except ValueError as exc:
        raise FilesystemMisconfigured(f"cluster {cluster.name}: {exc}") from None


# --------------------------------------------------------------------------------------- views


def check_sync_limits(request, access: ClusterAccess, path: str) -> None:
    """413 (use_an_operation) when a tree is past hcc.operations.sync_max_bytes or sync_max_files:
    such work would outlive the request, so the caller is pointed at POST .../operations instead of
    seeing it cut off. One ``du`` per limit (a few ms on a small tree); a missing path is left to the
    work itself to report."""
    limits = request.registry.hcc_settings.operations
    checks = [
        (limits.sync_max_bytes, size_argv, "bytes"),
        (limits.sync_max_files, count_argv, "files and directories"),
    ]
    for limit, argv, what in checks:
        if not limit:
            continue
        result = access.run(argv(path))
        found = parse_du(result.text()) if result.ok else None
        if found is not None and found > limit:
            cluster = access.cluster.name
            raise files.TooBigForRequest(
                f"{path} holds {found} {what}, more than {limit} for a synchronous request: "
                f"use POST /api/v1/clusters/{cluster}/operations",
                path=path,
                limit=limit,
            )


def _tree_runner(request, access: ClusterAccess) -> Callable:
    """A runner for work on whole trees (copy, recursive delete): hcc.files.tree_timeout, not the
    cluster's command_timeout, which is sized for quick commands."""
    return access.runner(request.registry.hcc_settings.files.tree_timeout)


@file_metadata.get(**querystring(ListQuery()))
@documented(200, 400, 401, 403, 404, 409, 413, 502, 503, 504, response=METADATA_OUT, tag="files")
def get_file(request):
    """Metadata of a path; for a directory also one page of its entries (directories first, by name),
    or all of them from offset on with all=true."""
    query = request.validated
    path = checked_path(query["path"])
    whole = query["all"]
    if whole and "limit" in request.GET:
        raise InvalidArgument("limit is not taken with all=true: the answer holds every entry", field="limit")
    access = request.cluster_access
    run = access.run
    with access.sftp() as sftp:
        # one lstat serves both answers: the listing's own entry and a non-directory's metadata
        attr = files.lstat_path(sftp, path)
        kind = files.file_type(attr.st_mode)
        if kind == "directory" or kind == "symlink":
            try:
                page = files.read_page(
                    sftp,
                    path,
                    offset=query["offset"],
                    limit=None if whole else query["limit"],
                    run=run,
                    attr=attr,
                    snapshots=request.registry.hcc_listing_snapshots,
                )
            except (files.NotADirectory, files.NoSuchPath):
                if kind == "directory":
                    raise
                # a symlink to a file, or a dangling one: its own metadata
            else:
                return listing_response(request, page)
        return files.get_metadata(sftp, path, run=run, attr=attr)


def listing_response(request, page: files.DirectoryPage):
    """The page as JSON, written from its rows (files.DirectoryPage.json_chunks) rather than through
    dicts and the renderer: a 10,000-entry listing took ~60 ms that way. A page of at most
    MAX_LIST_LIMIT entries is sent with its length; a whole listing as it is encoded, 1,000
    entries a chunk (never held whole as text)."""
    if len(page.rows) <= files.MAX_LIST_LIMIT:
        body = b"".join(page.json_chunks())
        return encoded_json(request, [body], length=len(body))
    return encoded_json(request, page.json_chunks())


@file_metadata.delete(**querystring(DeleteQuery()))
@documented(204, 400, 401, 403, 404, 409, 413, 502, 503, 504, tag="files")
def delete_file(request):
    """Delete a file, a symlink or an empty directory; recursive=true deletes a whole tree (413 past the
    synchronous limits: use an operation)."""
    query = request.validated
    path = checked_path(query["path"])
    access = request.cluster_access
    if query["recursive"]:
        check_sync_limits(request, access, path)
    with access.sftp() as sftp:
        files.delete(sftp, path, recursive=query["recursive"], run=_tree_runner(request, access))
    return no_content()


@file_content.get(**querystring(PathQuery()))
@documented(
    200,
    206,
    304,
    400,
    401,
    403,
    404,
    409,
    416,
    502,
    503,
    504,
    tag="files",
    headers=("Range", "If-Range", "If-None-Match"),
    content=FILE_CONTENT,
)
def download_file(request):
    """The file's bytes, streamed; Range (one range), ETag and If-None-Match are honoured."""
    query = request.validated
    path = checked_path(query["path"])
    return serve_file(request, request.cluster_access, path)


@file_content.put(**querystring(PathQuery()))
@documented(
    200,
    201,
    400,
    401,
    403,
    404,
    409,
    412,
    413,
    502,
    503,
    504,
    507,
    response=ENTRY_OUT,
    tag="files",
    headers=("If-Match",),
    body={"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
)
def put_file(request):
    """Create or replace a file with the body, atomically; If-Match guards against a change meanwhile."""
    query = request.validated
    path = checked_path(query["path"])
    access = request.cluster_access
    limit = request.registry.hcc_settings.files.max_upload_bytes
    # closing: a body read ahead stops being read (its thread joined) before the answer, also on failure
    with closing(body_chunks(request, limit, path)) as chunks, access.sftp() as sftp:
        created, meta = files.write_file(
            sftp,
            path,
            chunks,
            if_match=request.headers.get("If-Match"),
            max_bytes=limit,
            run=access.run,
            journal=upload_records(request, access),
        )
    request.response.status = 201 if created else 200
    request.response.headers["ETag"] = meta["etag"]
    return meta


@file_upload.post(**querystring(UploadQuery()))
@documented(
    200,
    201,
    400,
    401,
    403,
    404,
    409,
    413,
    415,
    502,
    503,
    504,
    507,
    response=UPLOAD_OUT,
    tag="files",
    body=UPLOAD_FORM,
)
def upload_files(request):
    """Upload the ``file`` parts of a multipart form into a directory, each atomically.

    A name that exists is a 409 unless overwrite=true. Files are written in order: when one fails,
    those before it stay (each is complete), the failing one leaves nothing.
    """
    query = request.validated
    directory = checked_path(query["path"])
    any_created, stored = store_form_files(
        request, request.cluster_access, directory, overwrite=query["overwrite"]
    )
    request.response.status = 201 if any_created else 200
    return {"files": stored}


def store_form_files(
    request, access: ClusterAccess, directory: str, *, overwrite: bool
) -> tuple[bool, list[dict[str, Any]]]:
    """Write the ``file`` parts of the request's multipart body into ``directory``, each atomically:
    (whether any was created, the metadata of each)."""
    boundary = multipart_boundary(request)
    run = access.run
    journal = upload_records(request, access)
    limit = request.registry.hcc_settings.files.max_upload_bytes
    chunks = body_chunks(request, limit, directory)
    parts = form_parts(chunks, boundary)
    stored: list[dict[str, Any]] = []
    any_created = False
    # closing: a body read ahead stops being read (its thread joined) before the answer, also on failure
    with closing(chunks), access.sftp() as sftp:
        try:
            attr = sftp.stat(directory)
        except OSError as exc:
            raise files.map_sftp_error(exc, directory, "look at") from None
        if not stat.S_ISDIR(attr.st_mode or 0):
            raise files.NotADirectory(f"not a directory: {directory}", path=directory)
        for part, body in parts:
            # the parser read headers as latin-1: "file" is ASCII, so any other name is refused as it is
            if part.name != "file":
                raise InvalidArgument(
                    f"unexpected form field {part.name[:64]!r}: only 'file' parts are accepted",
                    field="file",
                )
            name = part_filename(part)
            if not name or "/" in name or name in (".", "..") or "\x00" in name:
                raise InvalidArgument(f"a file part needs a plain file name, not {name!r}", field="file")
            target = checked_path(posixpath.join(directory, name), name="file")
            created, meta = files.write_file(
                sftp, target, body, overwrite=overwrite, max_bytes=limit, run=run, journal=journal
            )
            any_created = any_created or created
            stored.append(meta)
    if not stored:
        raise InvalidArgument("the form has no 'file' part", field="file")
    return any_created, stored


@file_mkdir.post(
    schema=MkdirBody(),
    validators=(colander_body_validator,),
    content_type="application/json",
)
@documented(200, 201, 400, 401, 403, 404, 409, 413, 415, 502, 503, 504, 507, response=ENTRY_OUT, tag="files")
def make_directory(request):
    """Create a directory; parents=true creates missing parents and accepts an existing directory (200)."""
    path = checked_path(request.validated["path"])
    access = request.cluster_access
    with access.sftp() as sftp:
        created, meta = files.make_directory(sftp, path, parents=request.validated["parents"], run=access.run)
    request.response.status = 201 if created else 200
    return meta


@file_touch.post(
    schema=PathBody(),
    validators=(colander_body_validator,),
    content_type="application/json",
)
@documented(200, 201, 400, 401, 403, 404, 409, 413, 415, 502, 503, 504, 507, response=ENTRY_OUT, tag="files")
def touch_file(request):
    """Create an empty file (201), or set an existing one's modification time to now (200)."""
    path = checked_path(request.validated["path"])
    access = request.cluster_access
    with access.sftp() as sftp:
        created, meta = files.touch(sftp, path, run=access.run)
    request.response.status = 201 if created else 200
    return meta


@file_move.post(
    schema=MoveBody(),
    validators=(colander_body_validator,),
    content_type="application/json",
)
@documented(200, 400, 401, 403, 404, 409, 413, 415, 500, 502, 503, 504, response=ENTRY_OUT, tag="files")
def move_file(request):
    """Rename or move a file or directory; an existing target is never replaced (409)."""
    path = checked_path(request.validated["path"])
    to = checked_path(request.validated["to"], name="to")
    access = request.cluster_access
    with access.sftp() as sftp:
        return files.move(sftp, path, to, run=access.run)


@file_copy.post(
    schema=MoveBody(),
    validators=(colander_body_validator,),
    content_type="application/json",
)
@documented(201, 400, 401, 403, 404, 409, 413, 415, 502, 503, 504, 507, response=ENTRY_OUT, tag="files")
def copy_file(request):
    """Copy a file or a directory tree on the cluster (the data stays there); the target must not exist
    (413 past the synchronous limits: use an operation)."""
    path = checked_path(request.validated["path"])
    to = checked_path(request.validated["to"], name="to")
    access = request.cluster_access
    check_sync_limits(request, access, path)
    with access.sftp() as sftp:
        meta = files.copy(sftp, _tree_runner(request, access), path, to)
    request.response.status = 201
    return meta
