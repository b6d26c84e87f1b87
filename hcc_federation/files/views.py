"""Cluster file systems as the caller: metadata, listings, streamed downloads and uploads, operations."""

from __future__ import annotations

import contextlib
import logging
import posixpath
import stat
from collections.abc import Callable, Iterator
from typing import Any

from cornice import Service
from cornice.validators import colander_body_validator, colander_querystring_validator

from .. import files
from ..api.docs import documented
from ..api.responses import no_content
from ..api.schemas import querystring_only
from ..auth.policy import AUTHENTICATED
from ..clusters import Cluster
from ..errors import BadRequest, ServiceError
from .download import serve_file
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
from .upload import MultipartReader, header_params, multipart_boundary, part_filename, request_chunks

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


class FilesystemMisconfigured(ServiceError):
    status = 500
    location = "path"
    name = "cluster"


def checked_path(value: str, *, location: str = "querystring", name: str = "path") -> str:
    try:
        return files.validate_path(value, name=name)
    except BadRequest as exc:
        exc.location = location
        raise


@contextlib.contextmanager
def body_locations() -> Iterator[None]:
    """Errors about paths that came in the JSON body point at the body, not the query string."""
    try:
        yield
    except files.PathError as exc:
        if exc.location == "querystring":
            exc.location = "body"
        raise


# ------------------------------------------------------------------------------------- helpers


def _cluster(request) -> Cluster:
    return request.registry.hcc_clusters.get(request.matchdict["cluster"])


def cluster_filesystems(request, cluster: Cluster) -> list[dict[str, str]]:
    """The cluster's named file systems resolved for the caller: [{"name", "path"}].

    ``$HOME`` costs an SFTP channel (SFTP starts in the home directory) and ``$GROUP`` a command
    (``id -gn``); neither is asked for unless a template uses it.
    """
    templates = dict(cluster.settings.filesystems)
    joined = " ".join(templates.values())
    username = request.identity.username
    home = group = ""
    if "HOME" in joined:
        with request.cluster_sftp(cluster) as sftp:
            home = sftp.normalize(".")
    if "GROUP" in joined:
        result = request.cluster_runner(cluster)(["id", "-gn"])
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


def _tree_runner(request, cluster: Cluster) -> Callable:
    """A runner for work on whole trees (copy, recursive delete): hcc.files.tree_timeout, not the
    cluster's command_timeout, which is sized for quick commands."""
    run = request.cluster_runner(cluster)
    timeout = request.registry.hcc_settings.files.tree_timeout
    return lambda argv, stdin=None: run(argv, stdin=stdin, timeout=timeout)


@file_metadata.get(
    permission=AUTHENTICATED,
    schema=ListQuery(),
    validators=(colander_querystring_validator,),
    deserializer=querystring_only,
)
@documented(200, 400, 401, 403, 404, 409, 502, 503, 504, response=METADATA_OUT, tag="files")
def get_file(request):
    """Metadata of a path; for a directory also one page of its entries (directories first, by name)."""
    query = request.validated
    path = checked_path(query["path"])
    cluster = _cluster(request)
    run = request.cluster_runner(cluster)
    with request.cluster_sftp(cluster) as sftp:
        meta = files.get_metadata(sftp, path, run=run)
        if meta["type"] == "directory" or meta["type"] == "symlink":
            try:
                return files.list_directory(sftp, path, offset=query["offset"], limit=query["limit"], run=run)
            except (files.NotADirectory, files.NoSuchPath):
                if meta["type"] == "directory":
                    raise
                # a symlink to a file, or a dangling one: its own metadata
        return meta


@file_metadata.delete(
    permission=AUTHENTICATED,
    schema=DeleteQuery(),
    validators=(colander_querystring_validator,),
    deserializer=querystring_only,
)
@documented(204, 400, 401, 403, 404, 409, 502, 503, 504, tag="files")
def delete_file(request):
    """Delete a file, a symlink or an empty directory; recursive=true deletes a whole tree."""
    query = request.validated
    path = checked_path(query["path"])
    cluster = _cluster(request)
    with request.cluster_sftp(cluster) as sftp:
        files.delete(sftp, path, recursive=query["recursive"], run=_tree_runner(request, cluster))
    return no_content()


@file_content.get(
    permission=AUTHENTICATED,
    schema=PathQuery(),
    validators=(colander_querystring_validator,),
    deserializer=querystring_only,
)
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
    cluster = _cluster(request)
    return serve_file(request, cluster, request.cluster_identity(cluster), path)


@file_content.put(
    permission=AUTHENTICATED,
    schema=PathQuery(),
    validators=(colander_querystring_validator,),
    deserializer=querystring_only,
)
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
    cluster = _cluster(request)
    limit = request.registry.hcc_settings.files.max_upload_bytes
    with request.cluster_sftp(cluster) as sftp:
        created, meta = files.write_file(
            sftp,
            path,
            request_chunks(request, limit, path),
            if_match=request.headers.get("If-Match"),
            max_bytes=limit,
            run=request.cluster_runner(cluster),
        )
    request.response.status = 201 if created else 200
    request.response.headers["ETag"] = meta["etag"]
    return meta


@file_upload.post(
    permission=AUTHENTICATED,
    schema=UploadQuery(),
    validators=(colander_querystring_validator,),
    deserializer=querystring_only,
)
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
    boundary = multipart_boundary(request)
    cluster = _cluster(request)
    run = request.cluster_runner(cluster)
    limit = request.registry.hcc_settings.files.max_upload_bytes
    reader = MultipartReader(request_chunks(request, limit, directory), boundary)
    stored: list[dict[str, Any]] = []
    any_created = False
    with request.cluster_sftp(cluster) as sftp:
        try:
            attr = sftp.stat(directory)
        except OSError as exc:
            raise files.map_sftp_error(exc, directory, "look at") from None
        if not stat.S_ISDIR(attr.st_mode or 0):
            raise files.NotADirectory(f"not a directory: {directory}", path=directory)
        for headers, body in reader.parts():
            _, params = header_params(headers.get("content-disposition", ""))
            if params.get("name") != "file":
                raise BadRequest(
                    f"unexpected form field {params.get('name', '')[:64]!r}: only 'file' parts are accepted",
                    location="body",
                    name="file",
                )
            name = part_filename(params)
            if not name or "/" in name or name in (".", "..") or "\x00" in name:
                raise BadRequest(
                    f"a file part needs a plain file name, not {name!r}", location="body", name="file"
                )
            target = checked_path(posixpath.join(directory, name), location="body", name="file")
            created, meta = files.write_file(
                sftp, target, body, overwrite=query["overwrite"], max_bytes=limit, run=run
            )
            any_created = any_created or created
            stored.append(meta)
    if not stored:
        raise BadRequest("the form has no 'file' part", location="body", name="file")
    request.response.status = 201 if any_created else 200
    return {"files": stored}


@file_mkdir.post(
    permission=AUTHENTICATED,
    schema=MkdirBody(),
    validators=(colander_body_validator,),
    content_type="application/json",
)
@documented(200, 201, 400, 401, 403, 404, 409, 413, 415, 502, 503, 504, 507, response=ENTRY_OUT, tag="files")
def make_directory(request):
    """Create a directory; parents=true creates missing parents and accepts an existing directory (200)."""
    path = checked_path(request.validated["path"], location="body")
    cluster = _cluster(request)
    with request.cluster_sftp(cluster) as sftp, body_locations():
        created, meta = files.make_directory(
            sftp, path, parents=request.validated["parents"], run=request.cluster_runner(cluster)
        )
    request.response.status = 201 if created else 200
    return meta


@file_touch.post(
    permission=AUTHENTICATED,
    schema=PathBody(),
    validators=(colander_body_validator,),
    content_type="application/json",
)
@documented(200, 201, 400, 401, 403, 404, 409, 413, 415, 502, 503, 504, 507, response=ENTRY_OUT, tag="files")
def touch_file(request):
    """Create an empty file (201), or set an existing one's modification time to now (200)."""
    path = checked_path(request.validated["path"], location="body")
    cluster = _cluster(request)
    with request.cluster_sftp(cluster) as sftp, body_locations():
        created, meta = files.touch(sftp, path, run=request.cluster_runner(cluster))
    request.response.status = 201 if created else 200
    return meta


@file_move.post(
    permission=AUTHENTICATED,
    schema=MoveBody(),
    validators=(colander_body_validator,),
    content_type="application/json",
)
@documented(200, 400, 401, 403, 404, 409, 413, 415, 500, 502, 503, 504, response=ENTRY_OUT, tag="files")
def move_file(request):
    """Rename or move a file or directory; an existing target is never replaced (409)."""
    path = checked_path(request.validated["path"], location="body")
    to = checked_path(request.validated["to"], location="body", name="to")
    cluster = _cluster(request)
    with request.cluster_sftp(cluster) as sftp, body_locations():
        return files.move(sftp, path, to, run=request.cluster_runner(cluster))


@file_copy.post(
    permission=AUTHENTICATED,
    schema=MoveBody(),
    validators=(colander_body_validator,),
    content_type="application/json",
)
@documented(201, 400, 401, 403, 404, 409, 413, 415, 502, 503, 504, 507, response=ENTRY_OUT, tag="files")
def copy_file(request):
    """Copy a file or a directory tree on the cluster (the data stays there); the target must not exist."""
    path = checked_path(request.validated["path"], location="body")
    to = checked_path(request.validated["to"], location="body", name="to")
    cluster = _cluster(request)
    with request.cluster_sftp(cluster) as sftp, body_locations():
        meta = files.copy(sftp, _tree_runner(request, cluster), path, to)
    request.response.status = 201
    return meta
