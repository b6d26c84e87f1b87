"""Cluster file systems as the user sees them: path rules, metadata, streaming reads, atomic writes."""

from __future__ import annotations

import codecs
import contextlib
import errno
import heapq
import mimetypes
import posixpath
import re
import stat
import struct
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paramiko
from paramiko.message import Message
from paramiko.sftp import (
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_HANDLE,
    CMD_OPEN,
    CMD_STATUS,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_WRITE,
)
from paramiko.sftp_file import SFTPFile

from hcc_federation.errors import BadRequest, Conflict, Forbidden, NotFound, ServiceError
from hcc_federation.remote.result import CommandResult

# Metadata of a path (get_metadata, and each entry of list_directory):
#   path, name, type ("file" | "directory" | "symlink" | "other"), size, mode ("0644"), owner, group
#   (names), mtime (ISO 8601 UTC, whole seconds: SFTP v3 has no finer time); a symlink adds target;
#   a file adds mime and text, and etag where a runner is given (get_metadata: one ``stat`` on the
#   cluster, see FileVersion; entries of a listing carry none, as that would cost a command per page).
#   Paths are never followed for metadata (lstat): a symlink is shown as one. Owner and group names
#   come from OpenSSH's users-groups-by-id extension (one round trip for all new ids, cached per SFTP
#   connection), else from ``getent`` through the runner, else the number. Parsing ``longname`` of
#   listings was rejected: its format is the server's choice and it
#   is not there for a single stat.
#
# Every remote command gets an argv (``--`` before paths), never a shell string, and runs as the user.

# Runs an argv as the user on the login node (the SSH pool provides it, with its timeout and output cap).
Runner = Callable[[Sequence[str]], CommandResult]

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
# 256 KiB chunks: big enough that per-chunk overhead vanishes, small enough for a WSGI server to stream.
DEFAULT_CHUNK = 256 * 1024
# Bytes requested at once while reading; bounds the memory of one download (see read_chunks).
READ_WINDOW = 4 * 1024 * 1024
# Bytes looked at to decide whether a file "looks like text".
SNIFF_BYTES = 4096
# Temporary upload files: hidden, unique, and of fixed length, so a 255-byte target name still works.
TEMP_PREFIX = ".hcc-upload-"
# A temporary file untouched for a day was left by a dead link (a live upload writes to it all the
# time): the owner's next write into its directory removes it. That costs a `find` (4 ms on an idle
# bed), so a connection sweeps a directory at most once per SWEEP_INTERVAL, and sweeps what is older
# than a day less that interval (and a minute, as find counts whole minutes): whatever is a day old
# at a write was already that old at the last sweep, so after every write none is left.
SWEEP_INTERVAL = 3600
STALE_TEMP_MINUTES = 24 * 60 - SWEEP_INTERVAL // 60 - 1

_MESSAGE_CAP = 300


# --------------------------------------------------------------------------------------------- errors


class PathError(ServiceError):
    """A failure about one path on the cluster; ``path`` names it for logs and callers."""

    location = "querystring"
    name = "path"

    def __init__(
        self,
        description: str,
        *,
        path: str | None = None,
        name: str | None = None,
        location: str | None = None,
    ):
        super().__init__(description, name=name, location=location)
        self.path = path


class NoSuchPath(PathError, NotFound):
    status = 404


class PermissionDenied(PathError, Forbidden):
    status = 403


class AlreadyExists(PathError, Conflict):
    status = 409


class NotADirectory(PathError, Conflict):
    status = 409


class IsADirectory(PathError, Conflict):
    status = 409


class DirectoryNotEmpty(PathError, Conflict):
    status = 409


class NotARegularFile(PathError, Conflict):
    """A device, socket or fifo where a regular file was expected."""

    status = 409


class InvalidMove(PathError, Conflict):
    """Moving or copying a directory into itself."""

    status = 409


class PreconditionFailed(PathError):
    status = 412
    location = "header"
    name = "If-Match"


class PayloadTooLarge(PathError):
    status = 413
    location = "body"
    name = "body"


class RangeNotSatisfiable(PathError):
    status = 416
    location = "header"
    name = "Range"


class InsufficientStorage(PathError):
    status = 507


class NameNotUtf8(PathError):
    """The cluster holds a name that is not UTF-8, which JSON cannot carry faithfully.

    paramiko decodes every name as strict UTF-8; rather than a 500, say which directory holds it.
    """

    status = 502


class RemoteFileError(PathError):
    """Anything the cluster refused that we could not classify: a 500 with the cluster's words."""

    status = 500


class WriteFailed(PathError):
    """The cluster answered a write with a plain SFTP "Failure" and its file system is not full:
    SFTP v3 does not say why (EIO, EFBIG, a quota...), so it is the cluster's failure (502), not 507."""

    status = 502


class LinkLost(ServiceError):
    """The SSH connection broke under an SFTP request (reset, closed, a protocol failure): 503."""

    status = 503
    location = "path"
    name = "cluster"


class LinkTimeout(ServiceError):
    """The cluster did not answer an SFTP request within the command timeout: 504."""

    status = 504
    location = "path"
    name = "cluster"


def link_failure(exc: BaseException, path: str, action: str) -> ServiceError | None:
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


# ----------------------------------------------------------------------------------------- path rules


def validate_path(path: object, *, name: str = "path") -> str:
    """Return ``path`` normalized, or raise ``BadRequest`` (querystring, ``name``).

    Absolute, no NUL, at most 4096 bytes of UTF-8 and 255 bytes per component. ``..`` is resolved
    lexically: it grants nothing, since every operation runs with the user's own Unix rights.
    """
    if not isinstance(path, str) or not path:
        raise BadRequest("a path is required", location="querystring", name=name)
    if "\x00" in path:
        raise BadRequest("a path cannot contain a NUL character", location="querystring", name=name)
    if not path.startswith("/"):
        raise BadRequest(f"the path must be absolute: {path}", location="querystring", name=name)
    try:
        raw = path.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("the path is not valid UTF-8", location="querystring", name=name) from None
    if len(raw) > MAX_PATH_BYTES:
        raise BadRequest(f"the path is longer than {MAX_PATH_BYTES} bytes", location="querystring", name=name)
    normalized = posixpath.normpath(path)
    # POSIX lets normpath keep a leading "//" (implementation-defined); on Linux it is just "/".
    if normalized.startswith("//"):
        normalized = "/" + normalized.lstrip("/")
    for component in normalized.split("/"):
        if len(component.encode("utf-8")) > MAX_NAME_BYTES:
            raise BadRequest(
                f"a path component is longer than {MAX_NAME_BYTES} bytes", location="querystring", name=name
            )
    return normalized


def resolve_filesystems(
    templates: Mapping[str, str], *, user: str, home: str, group: str
) -> list[dict[str, str]]:
    """Named file systems of a cluster for one user, e.g. ``{"WORK": "/work/$GROUP/$USER"}``.

    ``$HOME``, ``$USER`` and ``$GROUP`` (or ``${...}``) are substituted; any other ``$`` word is a
    configuration error (``ValueError``), as is a result that is not a valid absolute path. Order is the
    configuration's.
    """
    values = {"HOME": home, "USER": user, "GROUP": group}

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1) or match.group(2)
        if key not in values:
            raise ValueError(f"unknown variable ${key} in file system template {template!r}")
        return values[key]

    result = []
    for fs_name, template in templates.items():
        path = re.sub(r"\$(?:\{(\w+)\}|(\w+))", substitute, template)
        try:
            path = validate_path(path)
        except BadRequest as exc:
            raise ValueError(
                f"file system {fs_name!r} resolves to an invalid path: {exc.description}"
            ) from None
        result.append({"name": fs_name, "path": path})
    return result


# ----------------------------------------------------------------------------------------- metadata


def file_type(mode: int | None) -> str:
    if mode is None:
        return "other"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


@dataclass(frozen=True)
class FileVersion:
    """What identifies one version of a regular file's content: see ``version_argv``."""

    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    mode: int

    @property
    def etag(self) -> str:
        """A strong entity tag: it changes whenever the content may have changed.

        Writes through the service rename a new file over the old one (a new inode; a freed inode
        number may come back, but with a new ctime). Writes in place change mtime and ctime, in
        nanoseconds (kernel clock ticks, ~4 ms: two same-size writes in place within one tick are
        the case left); ctime cannot be set back by users, as mtime can (touch -d).
        """
        return f'"{self.inode:x}-{self.size:x}-{self.mtime_ns:x}-{self.ctime_ns:x}"'


# inode, size, mtime and ctime with nanoseconds, raw mode in hex: one line, fields split by spaces
_VERSION_FORMAT = "%i %s %.9Y %.9Z %f\\n"


def version_argv(path: str) -> list[str]:
    """GNU ``stat`` of a file (following symlinks) for its version: SFTP v3 has no inode and no
    sub-second times, so its attributes cannot tell two same-size writes in one second apart."""
    return ["env", "LC_ALL=C", "stat", "-L", f"--printf={_VERSION_FORMAT}", "--", path]


def _nanoseconds(text: str) -> int:
    seconds, _, fraction = text.partition(".")
    sign = -1 if seconds.startswith("-") else 1
    return int(seconds) * 10**9 + sign * int(fraction.ljust(9, "0")[:9] or "0")


def parse_version(output: str) -> FileVersion:
    """The output of ``version_argv`` -> FileVersion; ValueError if it is not that."""
    inode, size, mtime, ctime, mode = output.strip().split(" ")
    return FileVersion(int(inode), int(size), _nanoseconds(mtime), _nanoseconds(ctime), int(mode, 16))


def file_version(run: Runner, path: str) -> FileVersion:
    """The version of a regular file (following symlinks), by one ``stat`` on the cluster (~3 ms)."""
    path = validate_path(path)
    result = run(version_argv(path))
    if not result.ok:
        raise map_command_error(result, path)
    try:
        version = parse_version(result.text())
    except ValueError:
        raise RemoteFileError(
            f"unexpected stat output for {path}: {result.text()[:100]!r}", path=path
        ) from None
    if stat.S_ISDIR(version.mode):
        raise IsADirectory(f"is a directory: {path}", path=path)
    if not stat.S_ISREG(version.mode):
        raise NotARegularFile(f"not a regular file: {path}", path=path)
    return version


def iso_time(timestamp: int | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Only Python's built-in table: the system's /etc/mime.types differs between machines.
_MIME = mimetypes.MimeTypes(filenames=())
for _ext in (".out", ".err", ".log", ".slurm", ".sbatch", ".md", ".yaml", ".yml", ".toml", ".ini", ".cfg"):
    _MIME.add_type("text/plain", _ext)


def guess_mime(name: str, text: bool | None = None) -> str:
    """The MIME type by name; a name that says nothing gives text/plain if the content looks like text."""
    guessed, _ = _MIME.guess_type(name, strict=False)
    if guessed:
        return guessed
    return "text/plain" if text else "application/octet-stream"


def looks_like_text(sample: bytes) -> bool:
    """No NUL byte and valid UTF-8 (a multi-byte character cut by the sample's end is allowed)."""
    if b"\x00" in sample:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


class _IdNames:
    """uid/gid -> name for one SFTP connection (ids rarely change names; bounded, so never stale for long)."""

    MAX = 4096

    def __init__(self) -> None:
        self.users: dict[int, str] = {}
        self.groups: dict[int, str] = {}


_ID_NAMES: weakref.WeakKeyDictionary[paramiko.SFTPClient, _IdNames] = weakref.WeakKeyDictionary()
_ID_NAMES_LOCK = threading.Lock()


def _id_names(sftp: paramiko.SFTPClient) -> _IdNames:
    with _ID_NAMES_LOCK:
        names = _ID_NAMES.get(sftp)
        if names is None or len(names.users) + len(names.groups) > _IdNames.MAX:
            names = _ID_NAMES[sftp] = _IdNames()
        return names


def _ids_by_extension(
    sftp: paramiko.SFTPClient, uids: list[int], gids: list[int]
) -> tuple[list[str], list[str]]:
    """OpenSSH >= 9.1's ``users-groups-by-id@openssh.com``: names for ids in one SFTP round trip.

    paramiko has no public call for it, so this uses ``_request`` the way paramiko's own
    ``posix_rename`` does. An empty name means the server does not know the id.
    """
    packed_uids = struct.pack(f">{len(uids)}I", *uids)
    packed_gids = struct.pack(f">{len(gids)}I", *gids)
    kind, msg = sftp._request(CMD_EXTENDED, "users-groups-by-id@openssh.com", packed_uids, packed_gids)
    if kind != CMD_EXTENDED_REPLY:
        raise OSError("unexpected reply to users-groups-by-id")
    user_msg, group_msg = Message(msg.get_string()), Message(msg.get_string())
    return (
        [user_msg.get_string().decode("utf-8", "replace") for _ in uids],
        [group_msg.get_string().decode("utf-8", "replace") for _ in gids],
    )


def parse_getent(output: str) -> dict[int, str]:
    """``getent passwd|group`` lines (name:x:id:...) -> {id: name}."""
    found: dict[int, str] = {}
    for line in output.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            found[int(fields[2])] = fields[0]
    return found


def _resolve_ids(
    sftp: paramiko.SFTPClient, uids: Iterable[int | None], gids: Iterable[int | None], run: Runner | None
) -> _IdNames:
    """Make sure every id has a name in the connection's cache; returns the cache.

    Order of attempts: the cache; the OpenSSH extension (no extra channel); ``getent`` through the
    runner; the number itself as a string (what ``ls -l`` shows for an unknown id).
    """
    names = _id_names(sftp)
    want_u = sorted({u for u in uids if u is not None and u not in names.users})
    want_g = sorted({g for g in gids if g is not None and g not in names.groups})
    if not want_u and not want_g:
        return names
    try:
        got_u, got_g = _ids_by_extension(sftp, want_u, want_g)
        for uid, user in zip(want_u, got_u, strict=True):
            names.users[uid] = user or str(uid)
        for gid, group in zip(want_g, got_g, strict=True):
            names.groups[gid] = group or str(gid)
        return names
    except (OSError, EOFError, paramiko.SFTPError):
        pass  # an older server: fall through to getent
    for table, wanted, cache in (("passwd", want_u, names.users), ("group", want_g, names.groups)):
        if not wanted:
            continue
        found: dict[int, str] = {}
        if run is not None:
            result = run(["getent", table, *map(str, wanted)])
            found = parse_getent(result.text())
        for ident in wanted:
            cache[ident] = found.get(ident, str(ident))
    return names


def _metadata(path: str, attr: paramiko.SFTPAttributes, names: _IdNames) -> dict[str, Any]:
    kind = file_type(attr.st_mode)
    meta: dict[str, Any] = {
        "path": path,
        "name": posixpath.basename(path) or "/",
        "type": kind,
        "size": attr.st_size,
        "mode": f"{stat.S_IMODE(attr.st_mode or 0):04o}",
        "owner": names.users.get(attr.st_uid, str(attr.st_uid)) if attr.st_uid is not None else None,
        "group": names.groups.get(attr.st_gid, str(attr.st_gid)) if attr.st_gid is not None else None,
        "mtime": iso_time(attr.st_mtime),
    }
    return meta


def _sniff_text(sftp: paramiko.SFTPClient, path: str) -> bool | None:
    """Read the first bytes to tell text from binary; None when the file cannot be read."""
    try:
        with sftp.open(path, "rb") as handle:
            return looks_like_text(handle.read(SNIFF_BYTES))
    except OSError:
        return None


def get_metadata(
    sftp: paramiko.SFTPClient, path: str, *, run: Runner | None = None, sniff: bool = True
) -> dict[str, Any]:
    """Metadata of one path (not following a final symlink): see the field list at the top.

    Owner and group names come from the connection's id cache (see ``_resolve_ids``). For a file,
    ``text`` reads up to 4 KiB (one open/read/close) unless ``sniff`` is false (then ``text`` is None),
    and ``text`` is None when the file is not readable.
    """
    path = validate_path(path)
    try:
        attr = sftp.lstat(path)
    except OSError as exc:
        raise map_sftp_error(exc, path, "look at") from None
    names = _resolve_ids(sftp, [attr.st_uid], [attr.st_gid], run)
    meta = _metadata(path, attr, names)
    if meta["type"] == "symlink":
        meta["target"] = _readlink(sftp, path)
    elif meta["type"] == "file":
        if run is not None:
            meta["etag"] = file_etag(run, path)
        text = _sniff_text(sftp, path) if sniff else None
        meta["mime"] = guess_mime(meta["name"], text)
        meta["text"] = text
    return meta


def _readlink(sftp: paramiko.SFTPClient, path: str) -> str | None:
    try:
        return sftp.readlink(path)
    except (OSError, UnicodeDecodeError):
        # unreadable, or a target that is not UTF-8: the link is still listed, without a target
        return None


def file_etag(run: Runner, path: str) -> str:
    """The strong etag of a regular file (following symlinks), for ``If-Match``."""
    return file_version(run, path).etag


def require_regular(attr: paramiko.SFTPAttributes, path: str) -> None:
    kind = file_type(attr.st_mode)
    if kind == "directory":
        raise IsADirectory(f"is a directory: {path}", path=path)
    if kind != "file":
        raise NotARegularFile(f"not a regular file: {path}", path=path)


# ---------------------------------------------------------------------------------------- listing

# (rank, name, mode, size, uid, gid, mtime): rank 0 sorts directories first. Names are unique in a
# directory, so tuples never compare past the name. Kept compact because a deep page of a huge
# directory holds offset + limit of them.
_Row = tuple[int, str, int, int, int, int, int]


def _row(attr: paramiko.SFTPAttributes) -> _Row:
    mode = attr.st_mode or 0
    return (
        0 if stat.S_ISDIR(mode) else 1,
        attr.filename,
        mode,
        attr.st_size or 0,
        attr.st_uid if attr.st_uid is not None else -1,
        attr.st_gid if attr.st_gid is not None else -1,
        attr.st_mtime or 0,
    )


def page_rows(rows: Iterable[_Row], offset: int, limit: int) -> tuple[list[_Row], int]:
    """Directories first, then by name (code point order); returns (page, total) in O(offset+limit) memory."""
    total = 0

    def counted() -> Iterator[_Row]:
        nonlocal total
        for row in rows:
            total += 1
            yield row

    if offset + limit == 0:
        for _ in counted():
            pass
        return [], total
    smallest = heapq.nsmallest(offset + limit, counted())
    return smallest[offset:], total


def check_paging(offset: object, limit: object) -> tuple[int, int]:
    """offset >= 0 and 0 <= limit <= MAX_LIST_LIMIT, else BadRequest naming the parameter."""
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise BadRequest("offset must be a whole number >= 0", location="querystring", name="offset")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_LIST_LIMIT:
        raise BadRequest(
            f"limit must be between 0 and {MAX_LIST_LIMIT}", location="querystring", name="limit"
        )
    return offset, limit


def list_directory(
    sftp: paramiko.SFTPClient,
    path: str,
    *,
    offset: int = 0,
    limit: int = DEFAULT_LIST_LIMIT,
    run: Runner | None = None,
) -> dict[str, Any]:
    """The directory's metadata plus ``entries`` (one page), ``offset``, ``limit`` and ``total``.

    Streams the listing (``listdir_iter``) and keeps only the offset+limit smallest rows, so memory is
    bounded by the page, not by the directory. Entries carry ``mime`` guessed from the name and
    ``text: None``: sniffing would cost an open/read/close per file of the page. A symlink to a
    directory is listed (the symlink's own metadata comes first).
    """
    path = validate_path(path)
    offset, limit = check_paging(offset, limit)
    try:
        own = sftp.lstat(path)
        followed = sftp.stat(path) if stat.S_ISLNK(own.st_mode or 0) else own
    except OSError as exc:
        raise map_sftp_error(exc, path, "look at") from None
    if not stat.S_ISDIR(followed.st_mode or 0):
        raise NotADirectory(f"not a directory: {path}", path=path)
    try:
        page, total = page_rows((_row(attr) for attr in sftp.listdir_iter(path)), offset, limit)
    except OSError as exc:
        raise map_sftp_error(exc, path, "list") from None
    except UnicodeDecodeError:
        raise NameNotUtf8(f"a name in {path} is not valid UTF-8; it cannot be listed", path=path) from None
    names = _resolve_ids(sftp, [own.st_uid, *(r[4] for r in page)], [own.st_gid, *(r[5] for r in page)], run)
    result = _metadata(path, own, names)
    if result["type"] == "symlink":
        result["target"] = _readlink(sftp, path)
    entries = []
    for _, name, mode, size, uid, gid, mtime in page:
        attr = paramiko.SFTPAttributes()
        attr.st_mode, attr.st_size, attr.st_uid, attr.st_gid, attr.st_mtime = mode, size, uid, gid, mtime
        entry = _metadata(posixpath.join(path, name), attr, names)
        if entry["type"] == "symlink":
            entry["target"] = _readlink(sftp, entry["path"])
        elif entry["type"] == "file":
            entry["mime"] = guess_mime(name)
            entry["text"] = None
        entries.append(entry)
    result.update(entries=entries, offset=offset, limit=limit, total=total)
    return result


# ------------------------------------------------------------------------------------------- read


def read_chunks(
    sftp: paramiko.SFTPClient,
    path: str,
    offset: int = 0,
    length: int | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> Iterator[bytes]:
    """Bytes ``[offset, offset+length)`` of a file (to its size at open time), in chunks of ``chunk``.

    The file is opened now, so a missing or unreadable path raises before the first byte is sent;
    the returned generator closes it when exhausted or closed. Reads are pipelined one window
    (``READ_WINDOW``) at a time with ``readv``: paramiko's ``prefetch`` would keep issuing requests
    for the whole file from a thread even after the client went away. Memory: one window.
    """
    path = validate_path(path)
    if offset < 0 or (length is not None and length < 0) or chunk <= 0:
        raise RangeNotSatisfiable("offset and length must be >= 0", path=path)
    try:
        handle = sftp.open(path, "rb")
    except OSError as exc:
        raise _classify_failure(sftp, exc, path, "read") from None
    try:
        attr = handle.stat()
        require_regular(attr, path)
    except BaseException as exc:
        handle.close()
        if isinstance(exc, OSError):
            raise map_sftp_error(exc, path, "read") from None
        raise
    size = attr.st_size or 0
    if offset > size:
        handle.close()
        error = RangeNotSatisfiable(f"offset {offset} is beyond the end of {path} ({size} bytes)", path=path)
        # what RFC 9110 asks a 416 to carry
        error.headers["Content-Range"] = f"bytes */{size}"
        raise error
    end = size if length is None else min(size, offset + length)
    return _stream(handle, path, offset, end, chunk)


def _stream(handle: paramiko.SFTPFile, path: str, start: int, end: int, chunk: int) -> Iterator[bytes]:
    window = max(chunk, READ_WINDOW // chunk * chunk)
    try:
        for window_start in range(start, end, window):
            window_end = min(end, window_start + window)
            blocks = [(at, min(chunk, window_end - at)) for at in range(window_start, window_end, chunk)]
            for (_, wanted), data in zip(blocks, handle.readv(blocks), strict=False):
                if data:
                    yield data
                if len(data) < wanted:
                    return  # the file shrank while we read it: stop at its new end
    except OSError as exc:
        raise map_sftp_error(exc, path, "read") from None
    finally:
        handle.close()


# ------------------------------------------------------------------------------------------ write


def _lstat_or_none(sftp: paramiko.SFTPClient, path: str) -> paramiko.SFTPAttributes | None:
    try:
        return sftp.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise map_sftp_error(exc, path, "look at") from None


_ETAG_RE = re.compile(r'^"([0-9a-f]+)-([0-9a-f]+)-([0-9a-f]+)-([0-9a-f]+)"$')


def _may_match(attr: paramiko.SFTPAttributes, tag: str) -> bool:
    """Whether ``tag`` may be the etag of a file with these SFTP attributes (size, whole seconds).

    A cheap first look, before the upload: a tag whose size or second differs is stale for sure,
    so the client hears 412 without sending its body; the stat that decides comes before the rename.
    A tag that is not ours (or has a time before 1970) is left to that check.
    """
    match = _ETAG_RE.match(tag)
    if match is None:
        return True
    size, mtime_ns = int(match.group(2), 16), int(match.group(3), 16)
    return size == (attr.st_size or 0) and mtime_ns // 10**9 == (attr.st_mtime or 0)


def _if_match_tags(if_match: str) -> set[str]:
    return {tag.strip() for tag in if_match.split(",")}


def _precheck_if_match(
    run: Runner | None, attr: paramiko.SFTPAttributes | None, if_match: str | None, path: str
) -> None:
    if if_match is None:
        return
    if attr is None:
        raise PreconditionFailed(f"{path} does not exist (If-Match {if_match[:200]})", path=path)
    if if_match.strip() == "*":
        return
    if run is None:
        raise TypeError("If-Match with an etag needs a runner (etags come from stat on the cluster)")
    if not any(_may_match(attr, tag) for tag in _if_match_tags(if_match)):
        raise PreconditionFailed(f"{path} changed (If-Match {if_match[:200]})", path=path)


def _check_if_match(run: Runner | None, target: str, exists: bool, if_match: str | None, path: str) -> None:
    if if_match is None:
        return
    if not exists:
        raise PreconditionFailed(f"{path} does not exist (If-Match {if_match[:200]})", path=path)
    if if_match.strip() == "*":
        return
    if run is None:
        raise TypeError("If-Match with an etag needs a runner (etags come from stat on the cluster)")
    # strong comparison (RFC 9110 13.1.1): a weak W/"..." tag never matches
    current = file_etag(run, target)
    if current not in _if_match_tags(if_match):
        raise PreconditionFailed(f"{path} changed (its etag is now {current})", path=path)


def write_file(
    sftp: paramiko.SFTPClient,
    path: str,
    chunks: Iterable[bytes],
    *,
    if_match: str | None = None,
    overwrite: bool = True,
    max_bytes: int | None = None,
    run: Runner | None = None,
) -> tuple[bool, dict[str, Any]]:
    """Create or replace a file atomically; returns (created, metadata).

    The data goes to a hidden temporary file in the same directory, which then replaces the target
    in one rename: readers see the old or the new file, never a mix. An existing file keeps its
    permission bits (not its owner or group: a user cannot give files away). A symlink is written
    through (its target is replaced). ``if_match`` (an etag, a list of them, or ``*``) is looked at
    before the upload (cheaply, see ``_may_match``) and checked by a stat just before the rename; a
    change in the last instant between that check and the rename is not caught (SFTP has no
    conditional rename). ``overwrite=False`` uses
    OpenSSH's plain rename, which links and so never replaces an existing file. On any failure,
    including the caller's iterator raising (a client that went away), the temporary file is
    removed; if the connection itself died, the ``.hcc-upload-*`` file remains until a later write
    into the same directory by the same user sweeps it (once a day old). The temporary file is
    created with the target's owner bits only (0600 for a new file), never readable by others
    before the final chmod; a new file then gets the mode a plain create would give it.
    """
    path = validate_path(path)
    if path == "/":
        raise IsADirectory("is a directory: /", path=path)
    attr = _lstat_or_none(sftp, path)
    target = path
    if attr is not None and stat.S_ISLNK(attr.st_mode or 0):
        try:
            target = validate_path(sftp.normalize(path))
            attr = sftp.stat(target)
        except OSError as exc:
            raise map_sftp_error(exc, path, "follow the symlink") from None
    if attr is not None:
        require_regular(attr, path)
        if not overwrite:
            raise AlreadyExists(f"already exists: {path}", path=path)
    _precheck_if_match(run, attr, if_match, path)
    created = attr is None

    directory = posixpath.dirname(target)
    temp = posixpath.join(directory, f"{TEMP_PREFIX}{uuid.uuid4().hex}")
    # Never more readable than the file it replaces, from its first byte: the target's owner bits
    # only (0600 for a new file); group and other bits come with the final chmod, after the data.
    private = stat.S_IMODE(attr.st_mode or 0) & 0o600 if attr is not None else 0o600
    try:
        handle = create_exclusive(sftp, temp, private)
    except OSError as exc:
        raise _classify_failure(sftp, exc, directory, "create a file in") from None
    written = 0
    storing = True
    try:
        with _closing_unless_link_failed(handle, path):
            # Pipelined: paramiko sends WRITEs without waiting for each status, one round trip each.
            handle.set_pipelined(True)
            for data in chunks:
                written += len(data)
                if max_bytes is not None and written > max_bytes:
                    raise PayloadTooLarge(f"the upload is larger than {max_bytes} bytes", path=path)
                handle.write(data)
            _finish_pipelined_writes(handle)
        # Belt and braces, as paramiko's own putfo(confirm=True) does: the size must be what we sent.
        stored_attr = sftp.stat(temp)
        stored = stored_attr.st_size
        if stored != written:
            raise InsufficientStorage(f"the cluster stored {stored} of {written} bytes of {path}", path=path)
        storing = False
        final = stat.S_IMODE(attr.st_mode or 0) if attr is not None else _new_file_mode(sftp, directory)
        if final != private:
            sftp.chmod(temp, final)
        current = _lstat_or_none(sftp, target)
        if not overwrite and current is not None:
            raise AlreadyExists(f"already exists: {path}", path=path)
        _check_if_match(run, target, attr is not None and current is not None, if_match, path)
        if overwrite:
            sftp.posix_rename(temp, target)
        else:
            sftp.rename(temp, target)
    except BaseException as exc:
        failure = link_failure(exc, path, "write")
        if failure is not None:
            # the link is dead or silent: removing the temporary file over it would fail, or wait out
            # another timeout; it is left to be cleaned up later
            raise failure from None
        # SSH_FX_FAILURE on WRITE/CLOSE of a file we just created is ENOSPC, EDQUOT, EFBIG or EIO on
        # Linux, and SFTP v3 does not say which: ask the file system whether it is full, before the
        # temporary file is removed and frees its space
        full = (
            storing and isinstance(exc, OSError) and exc.errno is None and _file_system_full(sftp, directory)
        )
        _remove_quietly(sftp, temp)
        if isinstance(exc, OSError):
            if not overwrite and _lstat_or_none(sftp, target) is not None:
                raise AlreadyExists(f"already exists: {path}", path=path) from None
            mapped = map_sftp_error(exc, path, "write")
            if storing and type(mapped) is RemoteFileError:
                if full:
                    raise InsufficientStorage(
                        f"no space left on the device: the cluster could not store {path}", path=path
                    ) from None
                raise WriteFailed(
                    f"the cluster failed to store {path} ({exc}; SFTP gives no reason, a full quota is one)",
                    path=path,
                ) from None
            raise mapped from None
        raise
    if run is not None and stored_attr.st_uid is not None and _sweep_due(sftp, directory):
        sweep_stale_temp_files(run, directory, stored_attr.st_uid)
    return created, get_metadata(sftp, path, run=run, sniff=False)


@contextlib.contextmanager
def _closing_unless_link_failed(handle: paramiko.SFTPFile, path: str) -> Iterator[paramiko.SFTPFile]:
    """Close the handle after the block; after a link failure, only forget it.

    Closing sends a CLOSE, which waits for room in the channel's window and then for the answer:
    over a silent link each takes another whole timeout (a blackholed upload answered after 2x
    command_timeout, even with paramiko's async close). The server drops the handle with the
    channel, which the pool closes (a channel close needs no window).
    """
    try:
        yield handle
    except BaseException as exc:
        if link_failure(exc, path, "write") is not None:
            # paramiko's BufferedFile flag: also keeps __del__ from trying to close it later
            handle._closed = True
        else:
            handle.close()
        raise
    handle.close()


def create_exclusive(sftp: paramiko.SFTPClient, path: str, mode: int) -> SFTPFile:
    """Create ``path`` for writing with permission bits ``mode`` from the start (O_CREAT|O_EXCL).

    paramiko's ``open`` sends an empty attrs block, so the server's umask decides (0644 here) and a
    chmod after the data comes too late: another user could read a private file's new content
    while it was uploaded. SFTP v3's OPEN carries the permissions, which OpenSSH's sftp-server hands
    to open(2) (the umask can only take bits away). O_EXCL: an existing name, or a symlink planted
    under it, is never reused. paramiko has no public call for this; ``_request`` is what its own
    ``open`` uses.
    """
    attrs = paramiko.SFTPAttributes()
    attrs.st_mode = mode
    kind, msg = sftp._request(CMD_OPEN, path, SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL, attrs)
    if kind != CMD_HANDLE:
        raise paramiko.SFTPError("expected a handle")
    return SFTPFile(sftp, msg.get_binary(), "wb")


def _new_file_mode(sftp: paramiko.SFTPClient, directory: str) -> int:
    """The mode that a plain create gives a new file in ``directory`` (0666 less the server's umask).

    What an upload of a new file got before temporary files were created 0600, and what ``touch``
    gives: learnt from an empty probe file, created and removed at once (four SFTP round trips),
    because the umask is the server's (sshd, PAM, ``sftp-server -u``) and a default ACL may differ
    per directory.
    """
    probe = posixpath.join(directory, f"{TEMP_PREFIX}{uuid.uuid4().hex}")
    with sftp.open(probe, "wbx") as handle:
        mode = stat.S_IMODE(handle.stat().st_mode or 0o644)
    _remove_quietly(sftp, probe)
    return mode


# SSH transport (one per user and cluster in the pool) -> {directory: when it was last swept}
_SWEPT: weakref.WeakKeyDictionary[object, dict[str, float]] = weakref.WeakKeyDictionary()
_SWEPT_LOCK = threading.Lock()
_SWEPT_MAX = 4096


def _sweep_due(sftp: paramiko.SFTPClient, directory: str) -> bool:
    """True (and remembered) if this connection has not swept ``directory`` in SWEEP_INTERVAL."""
    transport = sftp.get_channel().get_transport()
    now = time.monotonic()
    with _SWEPT_LOCK:
        swept = _SWEPT.setdefault(transport, {})
        last = swept.get(directory)
        if last is not None and now - last < SWEEP_INTERVAL:
            return False
        if len(swept) >= _SWEPT_MAX:
            swept.clear()  # forgetting only makes the next sweeps come sooner
        swept[directory] = now
        return True


def sweep_stale_temp_argv(directory: str, uid: int) -> list[str]:
    """``find`` deleting the user's own ``.hcc-upload-*`` files of one directory left untouched.

    ``-type f`` skips symlinks (find never follows them, and ``-delete`` unlinks the name itself);
    ``-uid`` keeps other people's files out even where the user may delete them; ``/.`` makes find
    enter ``directory`` even if it is reached through a symlink. ``directory`` is absolute, so it is
    never read as an option.
    """
    return [
        "find",
        directory.rstrip("/") + "/.",
        "-maxdepth",
        "1",
        "-name",
        f"{TEMP_PREFIX}*",
        "-type",
        "f",
        "-uid",
        str(uid),
        "-mmin",
        f"+{STALE_TEMP_MINUTES}",
        "-delete",
    ]


def sweep_stale_temp_files(run: Runner, directory: str, uid: int) -> None:
    """Remove what dead links left in ``directory``: best effort, never failing the write that calls it.

    A live upload writes its temporary file all the time, so one untouched for a day is an orphan of
    a connection that died mid-write (where the temporary file could not be removed).
    """
    with contextlib.suppress(Exception):
        run(sweep_stale_temp_argv(directory, uid))


def _finish_pipelined_writes(handle: paramiko.SFTPFile) -> None:
    """Wait for the status of every WRITE still in flight, raising the first failure.

    paramiko 5.1 checks pipelined WRITE statuses only when over 100 are queued, and ``close()``
    discards the rest: on a full disk the tail of a file was silently lost (seen on a 1 MiB tmpfs).
    This drains the queue as paramiko's own unpipelined ``_write`` does; responses arrive in order.
    """
    handle.flush()
    pending = handle._reqs
    while pending:
        kind, _ = handle.sftp._read_response(pending.popleft())
        if kind != CMD_STATUS:
            raise paramiko.SFTPError("expected a status for a WRITE")


# Less free space than this, after a write failed, is taken for a full file system.
FULL_MARGIN = 1024 * 1024


def _file_system_full(sftp: paramiko.SFTPClient, directory: str) -> bool:
    """Whether the file system holding ``directory`` is (nearly) full, by OpenSSH's
    ``statvfs@openssh.com``; False when the server cannot tell."""
    try:
        kind, msg = sftp._request(CMD_EXTENDED, "statvfs@openssh.com", directory)
    except (OSError, EOFError, paramiko.SSHException):
        return False
    if kind != CMD_EXTENDED_REPLY:
        return False
    # f_bsize f_frsize f_blocks f_bfree f_bavail f_files f_ffree f_favail (PROTOCOL, OpenSSH)
    _bsize, frsize, _blocks, _bfree, bavail, _files, _ffree, favail = (msg.get_int64() for _ in range(8))
    return bavail * frsize < FULL_MARGIN or favail == 0


def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    # best effort: the original failure is what the caller must hear about
    with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
        sftp.remove(path)


# ------------------------------------------------------------------------ directories and names


def make_directory(
    sftp: paramiko.SFTPClient, path: str, *, parents: bool = False, run: Runner | None = None
) -> tuple[bool, dict[str, Any]]:
    """mkdir (``parents``: like ``mkdir -p``, an existing directory is fine); returns (created, metadata)."""
    path = validate_path(path)
    if not parents:
        try:
            sftp.mkdir(path)
        except OSError as exc:
            raise _classify_failure(sftp, exc, path, "create the directory") from None
        return True, get_metadata(sftp, path, run=run)
    created = False
    current = "/"
    for component in path.split("/")[1:]:
        if not component:
            continue
        current = posixpath.join(current, component)
        try:
            attr = sftp.stat(current)
        except FileNotFoundError:
            try:
                sftp.mkdir(current)
                created = True
                continue
            except OSError as exc:
                attr = _lstat_or_none(sftp, current)
                if attr is None:  # not a lost race with another mkdir: a real failure
                    raise _classify_failure(sftp, exc, current, "create the directory") from None
        except OSError as exc:
            raise map_sftp_error(exc, current, "look at") from None
        if not stat.S_ISDIR(attr.st_mode or 0):
            raise NotADirectory(f"not a directory: {current}", path=current)
    return created, get_metadata(sftp, path, run=run)


def touch(sftp: paramiko.SFTPClient, path: str, *, run: Runner | None = None) -> tuple[bool, dict[str, Any]]:
    """Create an empty file if missing, else set its mtime to now; returns (created, metadata).

    "now" is this host's clock (SFTP sets times, it has no "now"): keep the clocks in sync (NTP).
    """
    path = validate_path(path)
    attr = _lstat_or_none(sftp, path)
    try:
        if attr is None:
            # Append mode creates without truncating, so a file created meanwhile keeps its content.
            sftp.open(path, "ab").close()
        else:
            sftp.utime(path, None)
    except OSError as exc:
        raise _classify_failure(sftp, exc, path, "touch") from None
    return attr is None, get_metadata(sftp, path, run=run, sniff=False)


def _check_not_inside(path: str, to: str) -> None:
    if to == path or to.startswith(path.rstrip("/") + "/"):
        raise InvalidMove(f"cannot put {path} inside itself ({to})", path=to, name="to")


def move(sftp: paramiko.SFTPClient, path: str, to: str, *, run: Runner | None = None) -> dict[str, Any]:
    """Rename ``path`` to ``to``; an existing ``to`` is never replaced (409). Returns the new metadata.

    OpenSSH's plain SFTP rename links then unlinks a regular file (link() fails on an existing
    name: race free) and checks-then-renames anything else; we also check first for a clear error.
    Across file systems the cluster refuses (500 with its message): copy, then delete.
    """
    path = validate_path(path)
    to = validate_path(to, name="to")
    if path == "/":
        raise BadRequest("cannot move /", location="querystring", name="path")
    if _lstat_or_none(sftp, path) is None:
        raise NoSuchPath(f"no such file or directory: {path}", path=path)
    _check_not_inside(path, to)
    if _lstat_or_none(sftp, to) is not None:
        raise AlreadyExists(f"already exists: {to}", path=to, name="to")
    try:
        sftp.rename(path, to)
    except OSError as exc:
        if _lstat_or_none(sftp, to) is not None:
            raise AlreadyExists(f"already exists: {to}", path=to, name="to") from None
        if isinstance(exc, FileNotFoundError) and _lstat_or_none(sftp, path) is not None:
            parent = posixpath.dirname(to)
            raise NoSuchPath(f"no such directory: {parent}", path=parent, name="to") from None
        raise map_sftp_error(exc, path, f"move to {to}") from None
    return get_metadata(sftp, to, run=run, sniff=False)


def copy_argv(path: str, to: str) -> list[str]:
    """``cp`` of a tree onto a name that must not exist; ``--`` so that a name like ``-rf`` is a name.

    ``env LC_ALL=C`` pins the messages that ``map_command_error`` reads to English.
    """
    return ["env", "LC_ALL=C", "cp", "-R", "-p", "-T", "-n", "--", path, to]


def remove_tree_argv(path: str) -> list[str]:
    return ["env", "LC_ALL=C", "rm", "-r", "-f", "--one-file-system", "--", path]


def copy(sftp: paramiko.SFTPClient, run: Runner, path: str, to: str) -> dict[str, Any]:
    """Copy a file or a directory tree on the cluster (``cp -R -p -T -n``); returns the copy's metadata.

    The data never travels through the service. ``to`` must not exist (409). ``-T`` makes ``to`` the
    copy itself even if a directory of that name appears meanwhile (instead of ``to/<name>``), and
    ``-n`` never overwrites a file that appeared meanwhile. ``-R`` copies symlinks as symlinks.
    ``-p`` keeps modes and times (ownership silently becomes the user's). If ``cp`` fails, the
    partial copy is removed, so a failed copy leaves nothing.
    """
    path = validate_path(path)
    to = validate_path(to, name="to")
    source = _lstat_or_none(sftp, path)
    if source is None:
        raise NoSuchPath(f"no such file or directory: {path}", path=path)
    if stat.S_ISDIR(source.st_mode or 0):
        _check_not_inside(path, to)
    if _lstat_or_none(sftp, to) is not None:
        raise AlreadyExists(f"already exists: {to}", path=to, name="to")
    try:
        result = run(copy_argv(path, to))
    except Exception:
        # a timeout stopped cp part way (or the connection dropped): no half copy stays behind
        _remove_partial(sftp, run, to)
        raise
    if not result.ok:
        _remove_partial(sftp, run, to)
        raise map_command_error(result, path)
    return get_metadata(sftp, to, run=run, sniff=False)


def _remove_partial(sftp: paramiko.SFTPClient, run: Runner, to: str) -> None:
    """Best effort: the copy's own error is what the caller must see, not this clean-up's."""
    with contextlib.suppress(Exception):
        if _lstat_or_none(sftp, to) is not None:
            run(remove_tree_argv(to))


def delete(
    sftp: paramiko.SFTPClient, path: str, *, recursive: bool = False, run: Runner | None = None
) -> None:
    """Delete a file, a symlink (not its target) or an empty directory; ``recursive`` for a tree.

    A tree is removed on the cluster by ``rm -r -f --one-file-system`` in one command: an SFTP walk
    would cost round trips per entry and memory per level, where ``rm`` never follows symlinks and
    does not cross into other mounts. ``-f`` because no prompt can be answered. A failure part way
    leaves what could not be removed and raises with ``rm``'s message.
    """
    path = validate_path(path)
    if path == "/":
        raise BadRequest("refusing to delete /", location="querystring", name="path")
    attr = _lstat_or_none(sftp, path)
    if attr is None:
        raise NoSuchPath(f"no such file or directory: {path}", path=path)
    if not stat.S_ISDIR(attr.st_mode or 0):
        try:
            sftp.remove(path)
        except OSError as exc:
            raise _classify_failure(sftp, exc, path, "delete") from None
        return
    if recursive:
        if run is None:
            raise TypeError("a recursive delete needs a runner")
        result = run(remove_tree_argv(path))
        if not result.ok:
            raise map_command_error(result, path)
        return
    try:
        sftp.rmdir(path)
    except OSError as exc:
        if _lstat_or_none(sftp, path) is not None and _has_entries(sftp, path):
            raise DirectoryNotEmpty(f"directory not empty: {path}", path=path) from None
        raise _classify_failure(sftp, exc, path, "delete") from None


def _has_entries(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        # listdir reads the whole directory, but only when rmdir already failed, usually on a small one.
        return bool(sftp.listdir(path))
    except OSError:
        return False


# -------------------------------------------------------------------------------- error mapping


def map_sftp_error(exc: OSError, path: str, action: str) -> ServiceError:
    """paramiko's errors (errno from the SFTP status) -> typed errors naming the path."""
    failure = link_failure(exc, path, action)
    if failure is not None:
        return failure
    if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
        return NoSuchPath(f"no such file or directory: {path}", path=path)
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(f"permission denied: {path}", path=path)
    return RemoteFileError(f"the cluster could not {action} {path}: {exc}", path=path)


def _classify_failure(sftp: paramiko.SFTPClient, exc: OSError, path: str, action: str) -> ServiceError:
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


def map_command_error(result: CommandResult, path: str) -> ServiceError:
    """A failed ``cp``/``rm`` -> a typed error by its stderr (C locale messages), else a 500."""
    stderr = result.error_text()
    detail = stderr[:_MESSAGE_CAP] or f"exit status {result.exit_status}"
    for needle, error, what in _STDERR_ERRORS:
        if needle in stderr:
            return error(f"{what}: {path} ({detail})", path=path)
    # skip "env LC_ALL=C" to name the command that failed
    command = next((arg for arg in result.argv if arg != "env" and "=" not in arg), "command")
    return RemoteFileError(f"{command} failed on {path}: {detail}", path=path)
