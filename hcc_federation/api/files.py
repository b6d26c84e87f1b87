"""Cluster file systems as the caller: metadata, listings, streamed downloads and uploads, operations."""

from __future__ import annotations

import contextlib
import logging
import posixpath
import re
import stat
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import colander
import paramiko
from cornice import Service
from cornice.validators import colander_body_validator
from pyramid.response import Response
from webob.request import DisconnectionError

from .. import files
from ..auth.policy import AUTHENTICATED
from ..clusters import Cluster
from ..errors import BadRequest, ServiceError
from .docs import documented
from .responses import no_content
from .schemas import PathString, StrictSchema

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

# What one read of the request body asks for, and one recv of a download: 256 KiB, as the domain code.
CHUNK = files.DEFAULT_CHUNK
# Downloads up to this size are read over SFTP on the channel already open for the stat; bigger ones
# are streamed by `dd` on an exec channel: 5x faster than paramiko's SFTP reads (bench/bench_files.py).
SMALL_DOWNLOAD = 1024 * 1024
# A multipart part's header block larger than this is refused (browsers send a few hundred bytes).
MAX_PART_HEADERS = 16 * 1024
# How long a finished `dd` may take to report its exit status before we stop waiting.
EXIT_STATUS_WAIT = 5.0


class ClientDisconnected(BadRequest):
    """The client sent less than it announced. It is gone; the status only reaches the log."""

    location = "body"
    name = "body"


class UnsupportedMediaType(ServiceError):
    status = 415
    location = "header"
    name = "Content-Type"


class FilesystemMisconfigured(ServiceError):
    status = 500
    location = "path"
    name = "cluster"


# ------------------------------------------------------------------------------------- schemas


class JsonBoolean(colander.Boolean):
    """true or false in JSON; "yes", 1 or "false" are refused rather than guessed."""

    def deserialize(self, node, cstruct):
        if cstruct is not colander.null and not isinstance(cstruct, bool):
            raise colander.Invalid(node, f"must be true or false, not {type(cstruct).__name__}")
        return cstruct


def _query_boolean() -> colander.SchemaNode:
    # only these four spellings: a typo such as "ture" must not silently mean false
    return colander.SchemaNode(
        colander.Boolean(false_choices=("false", "0"), true_choices=("true", "1")), missing=False
    )


def _path_node(
    name: str = "path", description: str = "an absolute path on the cluster"
) -> colander.SchemaNode:
    return colander.SchemaNode(
        PathString(),
        name=name,
        validator=colander.Length(min=1, max=files.MAX_PATH_BYTES),
        description=description,
    )


class PathQuery(StrictSchema):
    path = _path_node()


class ListQuery(StrictSchema):
    path = _path_node()
    offset = colander.SchemaNode(colander.Integer(), missing=0, validator=colander.Range(min=0))
    limit = colander.SchemaNode(
        colander.Integer(),
        missing=files.DEFAULT_LIST_LIMIT,
        validator=colander.Range(min=0, max=files.MAX_LIST_LIMIT),
        description="entries of a directory per page (directories first, then by name)",
    )


class DeleteQuery(StrictSchema):
    path = _path_node()
    recursive = _query_boolean()


class UploadQuery(StrictSchema):
    path = _path_node(description="the directory that receives the files")
    overwrite = _query_boolean()


class PathBody(StrictSchema):
    path = _path_node()


class MkdirBody(StrictSchema):
    path = _path_node()
    parents = colander.SchemaNode(JsonBoolean(), missing=False)


class MoveBody(StrictSchema):
    path = _path_node()
    to = _path_node("to", "the new absolute path; it must not exist")


def parse_query(request, schema: colander.SchemaNode) -> dict[str, Any]:
    """The query string through a colander schema, without touching the body.

    Cornice's querystring validator builds its input with ``extract_cstruct``, which reads the whole
    body (``request.body`` or ``request.POST``): fatal for a streamed upload. A name given twice is
    an error rather than a guess at which one was meant.
    """
    params: dict[str, str] = {}
    try:
        items = list(request.GET.items())
    except UnicodeDecodeError:
        raise BadRequest("the query string is not valid UTF-8", location="querystring", name="path") from None
    for key, value in items:
        if key in params:
            raise BadRequest(f"{key} is given more than once", location="querystring", name=key)
        params[key] = value
    try:
        return schema.deserialize(params)
    except colander.Invalid as exc:
        name, message = next(iter(exc.asdict().items()))
        raise BadRequest(message, location="querystring", name=name or "querystring") from None


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


# ---------------------------------------------------------------------------- response schemas

ENTRY_PROPERTIES = {
    "path": {"type": "string"},
    "name": {"type": "string"},
    "type": {"type": "string", "enum": ["file", "directory", "symlink", "other"]},
    "size": {"type": "integer"},
    "mode": {"type": "string", "description": "permission bits in octal, e.g. 0644"},
    "owner": {"type": ["string", "null"]},
    "group": {"type": ["string", "null"]},
    "mtime": {"type": ["string", "null"], "format": "date-time"},
    "target": {"type": ["string", "null"], "description": "a symlink's target"},
    "etag": {
        "type": "string",
        "description": "a file's strong entity tag, for If-Match (in a file's metadata, not in listings)",
    },
    "mime": {"type": "string", "description": "a file's MIME type, guessed"},
    "text": {"type": ["boolean", "null"], "description": "a file looks like UTF-8 text (null: not read)"},
}
METADATA_OUT = {
    "type": "object",
    "properties": {
        **ENTRY_PROPERTIES,
        "entries": {"type": "array", "items": {"type": "object", "properties": ENTRY_PROPERTIES}},
        "offset": {"type": "integer"},
        "limit": {"type": "integer"},
        "total": {"type": "integer"},
    },
}
ENTRY_OUT = {"type": "object", "properties": ENTRY_PROPERTIES}
UPLOAD_OUT = {"type": "object", "properties": {"files": {"type": "array", "items": ENTRY_OUT}}}


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


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag in tags


_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
# No file is 10**19 bytes (a 64-bit off_t ends at 9.2 * 10**18): a longer number is "beyond any end".
# int() of more than 4300 digits raises ValueError (Python's CVE-2020-10735 guard): a 500, before.
_POSITION_DIGITS = 19


def _position(digits: str) -> int:
    """A byte position of a Range header, however many digits it has (leading zeros are allowed)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _POSITION_DIGITS else 10**_POSITION_DIGITS


def parse_range(header: str, size: int, path: str) -> tuple[int, int] | None:
    """A single ``Range: bytes=...`` -> (start, end exclusive); None for several ranges (served whole).

    A malformed or unsatisfiable range is a 416 carrying ``Content-Range: bytes */size``.
    """
    value = header.strip().replace(" ", "")
    if "," in value:
        # several ranges would need multipart/byteranges; RFC 9110 lets a server answer with the whole file
        return None
    match = _RANGE_RE.match(value)
    start: int | None = None
    end: int | None = None
    if match and (match.group(1) or match.group(2)):
        first, last = match.group(1), match.group(2)
        if first:
            start = _position(first)
            end = min(size, _position(last) + 1) if last else size
            if last and _position(last) < start:
                start = None
        else:
            suffix = _position(last)
            if suffix > 0:
                start, end = max(0, size - suffix), size
    if start is None or end is None or start >= size:
        error = files.RangeNotSatisfiable(
            f"range {header[:100]!r} cannot be served from {path} ({size} bytes)", path=path
        )
        error.headers["Content-Range"] = f"bytes */{size}"
        raise error
    return start, end


# the person's own browser may keep a file and revalidate it by ETag; no shared cache may
CONTENT_CACHING = "private, no-cache"


def content_disposition(name: str, disposition: str = "attachment") -> str:
    """RFC 6266: an ASCII fallback for old clients and the exact UTF-8 name in ``filename*``."""
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\%' else "_" for c in name) or "download"
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"


def _stat_regular(sftp: paramiko.SFTPClient, path: str) -> paramiko.SFTPAttributes:
    """stat (following symlinks) a regular file that the caller can open for reading."""
    try:
        attr = sftp.stat(path)
    except OSError as exc:
        raise files.map_sftp_error(exc, path, "look at") from None
    files.require_regular(attr, path)
    return attr


class _ChannelBody:
    """A WSGI app_iter over the stdout of a streaming command; closing it frees the pool slot.

    The WSGI server calls ``close()`` when the body is sent or when the client went away; either
    way the channel is closed and, if the command still runs, interrupted.
    """

    def __init__(self, stack: contextlib.ExitStack, channel: paramiko.Channel, length: int, path: str):
        self._stack = stack
        self._channel = channel
        self._length = length
        self._path = path

    def __iter__(self) -> Iterator[bytes]:
        remaining = self._length
        channel = self._channel
        while remaining > 0:
            data = channel.recv(min(CHUNK, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data
        if remaining > 0:
            channel.status_event.wait(EXIT_STATUS_WAIT)
            detail = channel.recv_stderr(4096).decode("utf-8", "replace").strip()
            # the headers promised the length: failing here makes the server cut the connection, so
            # the client sees a short body instead of a complete-looking wrong one
            raise OSError(f"{self._path} ended {remaining} bytes early while being sent ({detail[:200]})")

    def close(self) -> None:
        self._stack.close()


def serve_file(
    request, cluster: Cluster, identity, path: str, *, disposition: str = "attachment"
) -> Response:
    """A file's bytes as a streamed response (Range, ETag, If-None-Match), read as ``identity``.

    The stat and the permission check run over SFTP, so a missing or unreadable file fails with
    404/403 before any header is sent. Small bodies are read on that SFTP channel; bigger ones are
    streamed by ``dd`` (with ``count`` capped at the size announced, so a growing file cannot
    overrun Content-Length) on an exec channel that holds one session slot until the body ends.
    """
    # a download link reaches here without cluster_identity: take the cluster's slot (idempotent)
    request.hold_cluster(cluster)
    pool = request.registry.hcc_pool
    stack = contextlib.ExitStack()
    streaming = False
    try:
        sftp = stack.enter_context(pool.open_sftp(cluster.endpoint, identity))
        _stat_regular(sftp, path)
        # the size that goes with the etag: both from the one stat of the file's version
        version = files.file_version(lambda argv: pool.run(cluster.endpoint, identity, argv), path)
        size = version.size
        etag = version.etag
        if _etag_matches(request.headers.get("If-None-Match"), etag):
            not_modified = Response(status=304, headers={"ETag": etag, "Cache-Control": CONTENT_CACHING})
            del not_modified.content_type
            return not_modified
        name = posixpath.basename(path)
        response = Response(
            headers={
                "Content-Type": files.guess_mime(name),
                "ETag": etag,
                "Accept-Ranges": "bytes",
                "Content-Disposition": content_disposition(name, disposition),
                # never let a browser sniff user content into something executable
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": CONTENT_CACHING,
            },
        )
        response.last_modified = version.mtime_ns // 10**9
        start, end = 0, size
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if range_header and (if_range is None or if_range.strip() == etag):
            wanted = parse_range(range_header, size, path)
            if wanted is not None:
                start, end = wanted
                response.status = 206
                response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        length = end - start
        if request.method == "HEAD" or length == 0:
            response.app_iter = []
        elif length <= SMALL_DOWNLOAD:
            response.app_iter = [b"".join(files.read_chunks(sftp, path, start, length))]
        else:
            # readable? (stat does not tell: ACLs) -- fail with a status now, not mid-body
            try:
                sftp.open(path, "rb").close()
            except OSError as exc:
                raise files.map_sftp_error(exc, path, "read") from None
            # the SFTP slot is not needed while streaming: give it back before taking an exec slot
            stack.close()
            argv = [
                "dd",
                f"if={path}",  # absolute (validated), so never read as an option
                f"bs={CHUNK}",
                "iflag=skip_bytes,count_bytes,fullblock",
                f"skip={start}",
                f"count={length}",
                "status=none",
            ]
            channel = stack.enter_context(pool.exec_channel(cluster.endpoint, identity, argv))
            response.app_iter = _ChannelBody(stack, channel, length, path)
            streaming = True
        response.content_length = length
        return response
    finally:
        if not streaming:
            stack.close()


def request_chunks(request, limit: int, path: str) -> Iterator[bytes]:
    """The request body in chunks from ``body_file`` (never ``request.body``), counted against ``limit``."""
    stream = request.body_file
    expected = request.content_length
    received = 0
    while True:
        try:
            data = stream.read(CHUNK)
        except DisconnectionError as exc:
            # webob's error is an OSError: it must not be taken for a cluster failure ("no space?")
            raise ClientDisconnected(f"the upload of {path} was cut off: {exc}") from None
        if not data:
            break
        received += len(data)
        if received > limit:
            raise files.PayloadTooLarge(f"the upload is larger than {limit} bytes", path=path)
        yield data
    if expected is not None and received < expected:
        raise ClientDisconnected(f"the upload of {path} was cut off after {received} of {expected} bytes")


# ---------------------------------------------------------------------------- streaming multipart

_PARAM_RE = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """``form-data; name="file"; filename="a b"`` -> ("form-data", {"name": "file", "filename": "a b"})."""
    main, _, rest = value.partition(";")
    params = {}
    for key, raw in _PARAM_RE.findall(";" + rest):
        raw = raw.strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[key.lower()] = raw
    return main.strip().lower(), params


def part_filename(params: dict[str, str]) -> str | None:
    """The file name of a part: RFC 5987 ``filename*`` if given (exact), else ``filename``.

    Browsers (WHATWG) and urllib3 send ``filename`` as raw UTF-8 with ``"``, CR and LF written as
    %22, %0D and %0A; those three are decoded. A client that needs a name holding such a literal
    sequence sends ``filename*=UTF-8''<percent-encoded>``.
    """
    extended = params.get("filename*")
    if extended:
        charset, _, rest = extended.partition("'")
        _, _, encoded = rest.partition("'")
        try:
            return urllib.parse.unquote(encoded, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            raise BadRequest(
                "filename* is not valid percent-encoded text", location="body", name="file"
            ) from None
    name = params.get("filename")
    if name is None:
        return None
    for escaped, char in (("%22", '"'), ("%0D", "\r"), ("%0A", "\n"), ("%0d", "\r"), ("%0a", "\n")):
        name = name.replace(escaped, char)
    return name


class MultipartReader:
    """multipart/form-data read incrementally from a stream: memory holds one chunk, whatever the size.

    ``parts()`` yields (headers, body) with body an iterator of chunks; a body must be consumed (or
    is skipped) before the next part is read. A stream that ends before the closing delimiter
    raises ``ClientDisconnected``.
    """

    def __init__(self, chunks: Iterator[bytes], boundary: bytes):
        self._chunks = chunks
        self._delimiter = b"\r\n--" + boundary
        # a CRLF in front lets the first delimiter, at the very start of the body, match like the others
        self._buffer = b"\r\n"
        self._eof = False

    def _fill(self) -> bool:
        if self._eof:
            return False
        data = next(self._chunks, b"")
        if not data:
            self._eof = True
            return False
        self._buffer += data
        return True

    def _truncated(self) -> ClientDisconnected:
        return ClientDisconnected("the multipart body ended before its closing boundary")

    def _until_delimiter(self) -> Iterator[bytes]:
        delimiter = self._delimiter
        keep = len(delimiter) - 1
        while True:
            at = self._buffer.find(delimiter)
            if at >= 0:
                if at:
                    yield self._buffer[:at]
                self._buffer = self._buffer[at + len(delimiter) :]
                return
            # everything but a possible partial delimiter at the end is data
            if len(self._buffer) > keep:
                yield self._buffer[:-keep]
                self._buffer = self._buffer[-keep:]
            if not self._fill():
                raise self._truncated()

    def _line_end(self) -> bool:
        """After a delimiter: True if another part follows, False after the closing ``--``."""
        while len(self._buffer) < 2:
            if not self._fill():
                raise self._truncated()
        if self._buffer.startswith(b"--"):
            return False
        while b"\r\n" not in self._buffer:
            if len(self._buffer) > 1024 or not self._fill():
                raise BadRequest("malformed multipart delimiter line", location="body", name="body")
        padding, _, self._buffer = self._buffer.partition(b"\r\n")
        if padding.strip(b" \t"):
            raise BadRequest("malformed multipart delimiter line", location="body", name="body")
        return True

    def _headers(self) -> dict[str, str]:
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > MAX_PART_HEADERS:
                raise BadRequest("a multipart part has too many headers", location="body", name="body")
            if not self._fill():
                raise self._truncated()
        block, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        headers = {}
        for line in block.split(b"\r\n"):
            if not line:
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                text = line.decode("latin-1")
            name, sep, value = text.partition(":")
            if not sep:
                raise BadRequest("malformed multipart part header", location="body", name="body")
            headers[name.strip().lower()] = value.strip()
        return headers

    def parts(self) -> Iterator[tuple[dict[str, str], Iterator[bytes]]]:
        for _ in self._until_delimiter():
            pass  # the preamble
        while self._line_end():
            headers = self._headers()
            body = self._until_delimiter()
            yield headers, body
            for _ in body:
                pass  # the consumer stopped early: skip to the next delimiter


def multipart_boundary(request) -> bytes:
    content_type = request.headers.get("Content-Type", "")
    kind, params = header_params(content_type)
    if kind != "multipart/form-data":
        raise UnsupportedMediaType(f"an upload is multipart/form-data, not {kind or 'nothing'}")
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 70 or not boundary.isascii():
        raise BadRequest(
            "the multipart boundary is missing or invalid", location="header", name="Content-Type"
        )
    return boundary.encode("ascii")


# --------------------------------------------------------------------------------------- views


def _tree_runner(request, cluster: Cluster) -> Callable:
    """A runner for work on whole trees (copy, recursive delete): hcc.files.tree_timeout, not the
    cluster's command_timeout, which is sized for quick commands."""
    run = request.cluster_runner(cluster)
    timeout = request.registry.hcc_settings.files.tree_timeout
    return lambda argv, stdin=None: run(argv, stdin=stdin, timeout=timeout)


@file_metadata.get(permission=AUTHENTICATED)
@documented(200, 400, 401, 403, 404, 409, 502, 503, 504, response=METADATA_OUT, tag="files")
def get_file(request):
    """Metadata of a path; for a directory also one page of its entries (directories first, by name)."""
    query = parse_query(request, ListQuery())
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


get_file.hcc_querystring = ListQuery()


@file_metadata.delete(permission=AUTHENTICATED)
@documented(204, 400, 401, 403, 404, 409, 502, 503, 504, tag="files")
def delete_file(request):
    """Delete a file, a symlink or an empty directory; recursive=true deletes a whole tree."""
    query = parse_query(request, DeleteQuery())
    path = checked_path(query["path"])
    cluster = _cluster(request)
    with request.cluster_sftp(cluster) as sftp:
        files.delete(sftp, path, recursive=query["recursive"], run=_tree_runner(request, cluster))
    return no_content()


delete_file.hcc_querystring = DeleteQuery()


# A file's bytes: their media type is guessed from the name, so any type may come back.
FILE_CONTENT = {"*/*": {"schema": {"type": "string", "format": "binary"}}}


@file_content.get(permission=AUTHENTICATED)
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
    query = parse_query(request, PathQuery())
    path = checked_path(query["path"])
    cluster = _cluster(request)
    return serve_file(request, cluster, request.cluster_identity(cluster), path)


download_file.hcc_querystring = PathQuery()


@file_content.put(permission=AUTHENTICATED)
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
    query = parse_query(request, PathQuery())
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


put_file.hcc_querystring = PathQuery()


UPLOAD_FORM = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "format": "binary"},
                    "description": "one part per file, named by the part's filename (or filename*)",
                }
            },
        },
        "encoding": {"file": {"contentType": "application/octet-stream"}},
    }
}


@file_upload.post(permission=AUTHENTICATED)
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
    query = parse_query(request, UploadQuery())
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


upload_files.hcc_querystring = UploadQuery()


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
