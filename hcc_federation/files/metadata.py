"""Metadata of cluster files: types, times, MIME, owner and group names, versions (ETags)."""

from __future__ import annotations

import codecs
import mimetypes
import posixpath
import stat
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import paramiko
from paramiko.message import Message
from paramiko.sftp import CMD_EXTENDED_REPLY

from hcc_federation.remote.paramiko_compat import sftp_extended
from hcc_federation.remote.result import CommandResult

from ..timefmt import rfc3339
from .errors import IsADirectory, NotARegularFile, RemoteFileError, map_command_error, map_sftp_error
from .paths import validate_path

# Metadata of a path (get_metadata, and each entry of list_directory): the fields are declared once,
#   in files/schemas.py (ENTRY). mtime has whole seconds: SFTP v3 has no finer time. A file's etag
#   comes where a runner is given (get_metadata: one ``stat`` on the cluster, see FileVersion; entries
#   of a listing carry none, as that would cost a command per page).
#   Paths are never followed for metadata (lstat): a symlink is shown as one. Owner and group names
#   come from OpenSSH's users-groups-by-id extension (one round trip for all new ids, cached per
#   pooled SSH connection, see IdNames), else from ``getent`` through the runner, else the number.
#   Parsing ``longname`` of listings was rejected: its format is the server's choice and it is not
#   there for a single stat.
#
# Every remote command gets an argv (``--`` before paths), never a shell string, and runs as the user.

# Runs an argv as the user on the login node (the SSH pool provides it, with its timeout and output cap).
Runner = Callable[[Sequence[str]], CommandResult]

# Bytes looked at to decide whether a file "looks like text".
SNIFF_BYTES = 4096


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


# guess_mime's answers for names whose answer depends on their last suffix alone (see listing_mime)
_MIME_BY_SUFFIX: dict[str, str] = {}
_MIME_BY_SUFFIX_MAX = 4096


def listing_mime(name: str) -> str:
    """``guess_mime(name)`` for a name without ``/``, remembered by the name's suffix.

    mimetypes parses each name as a URL and walks its suffixes (~15 us a name: 150 ms of a
    10,000-entry listing). Its answer depends on the last suffix alone unless the name has a
    ``:`` (a URL scheme, e.g. ``data:``) or that suffix is a compression or alias one (``.gz``,
    ``.tgz``): those are asked every time. The suffix is posixpath.splitext's (a name of leading
    dots only has none). At most _MIME_BY_SUFFIX_MAX suffixes are kept.
    """
    dot = name.rfind(".")
    suffix = name[dot:] if dot > 0 and (name[0] != "." or name[:dot].lstrip(".")) else ""
    known = _MIME_BY_SUFFIX.get(suffix)
    if known is not None and ":" not in name:
        return known
    guessed = guess_mime(name)
    alone = ":" not in name and suffix.lower() not in _MIME.suffix_map and suffix not in _MIME.encodings_map
    if alone and len(_MIME_BY_SUFFIX) < _MIME_BY_SUFFIX_MAX:
        _MIME_BY_SUFFIX[suffix] = guessed
    return guessed


def looks_like_text(sample: bytes) -> bool:
    """No NUL byte and valid UTF-8 (a multi-byte character cut by the sample's end is allowed)."""
    if b"\x00" in sample:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


class IdNames:
    """uid/gid -> name, shared by every SFTP channel of one pooled connection (one user on one cluster).

    An SFTP client lives for one request (the pool opens a channel per use), so a cache keyed by it
    never served a second request; the connection lives for up to hcc.ssh.max_lifetime and serves
    all of that user's requests. Bounded (MAX ids) and expiring (TTL seconds): a renamed account
    or group shows its new name within TTL, and a directory of many owners cannot grow it for long.
    """

    MAX = 4096
    TTL = 300.0

    def __init__(self, now: float) -> None:
        self.born = now
        self.users: dict[int, str] = {}
        self.groups: dict[int, str] = {}

    def stale(self, now: float) -> bool:
        return now - self.born > self.TTL or len(self.users) + len(self.groups) > self.MAX


# keyed by the pooled transport: it goes (weakly) when the pool retires or drops the connection
_ID_NAMES: weakref.WeakKeyDictionary[object, IdNames] = weakref.WeakKeyDictionary()
_ID_NAMES_LOCK = threading.Lock()


def _id_names(sftp: paramiko.SFTPClient) -> IdNames:
    channel = sftp.get_channel()
    # the connection when there is one (the pool's); an SFTP client on its own caches for itself
    owner = channel.get_transport() if channel is not None else sftp
    now = time.monotonic()
    with _ID_NAMES_LOCK:
        names = _ID_NAMES.get(owner)
        if names is None or names.stale(now):
            names = _ID_NAMES[owner] = IdNames(now)
        return names


# the home directory of each pooled connection's user (SFTP starts there), asked once per connection
_HOMES: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()


def home_directory(sftp: paramiko.SFTPClient) -> str:
    """The user's home directory (where a new SFTP session starts), asked once per pooled connection.

    A connection is one login of one user, so the answer cannot change during its life; caching it
    takes the SFTP round trip off every cluster detail after the first.
    """
    channel = sftp.get_channel()
    owner = channel.get_transport() if channel is not None else sftp
    with _ID_NAMES_LOCK:
        home = _HOMES.get(owner)
    if home is None:
        # the pool hands out sessions at the start directory (a kept one's chdir is undone)
        home = sftp.normalize(".")
        with _ID_NAMES_LOCK:
            _HOMES[owner] = home
    return home


def _ids_by_extension(
    sftp: paramiko.SFTPClient, uids: list[int], gids: list[int]
) -> tuple[list[str], list[str]]:
    """OpenSSH >= 9.1's ``users-groups-by-id@openssh.com``: names for ids in one SFTP round trip.

    paramiko has no public call for it (see remote.paramiko_compat.sftp_extended). An empty name
    means the server does not know the id.
    """
    packed_uids = struct.pack(f">{len(uids)}I", *uids)
    packed_gids = struct.pack(f">{len(gids)}I", *gids)
    kind, msg = sftp_extended(sftp, "users-groups-by-id@openssh.com", packed_uids, packed_gids)
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


def resolve_ids(
    sftp: paramiko.SFTPClient, uids: Iterable[int | None], gids: Iterable[int | None], run: Runner | None
) -> IdNames:
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


def attr_metadata(path: str, attr: paramiko.SFTPAttributes, names: IdNames) -> dict[str, Any]:
    kind = file_type(attr.st_mode)
    meta: dict[str, Any] = {
        "path": path,
        "name": posixpath.basename(path) or "/",
        "type": kind,
        "size": attr.st_size,
        "mode": f"{stat.S_IMODE(attr.st_mode or 0):04o}",
        "owner": names.users.get(attr.st_uid, str(attr.st_uid)) if attr.st_uid is not None else None,
        "group": names.groups.get(attr.st_gid, str(attr.st_gid)) if attr.st_gid is not None else None,
        "mtime": rfc3339(attr.st_mtime),
    }
    return meta


def _sniff_text(sftp: paramiko.SFTPClient, path: str) -> bool | None:
    """Read the first bytes to tell text from binary; None when the file cannot be read."""
    try:
        with sftp.open(path, "rb") as handle:
            return looks_like_text(handle.read(SNIFF_BYTES))
    except OSError:
        return None


def lstat_path(sftp: paramiko.SFTPClient, path: str) -> paramiko.SFTPAttributes:
    """The path's own attributes (a final symlink not followed), its failure mapped to a file error."""
    try:
        return sftp.lstat(path)
    except OSError as exc:
        raise map_sftp_error(exc, path, "look at") from None


def get_metadata(
    sftp: paramiko.SFTPClient,
    path: str,
    *,
    run: Runner | None = None,
    sniff: bool = True,
    attr: paramiko.SFTPAttributes | None = None,
) -> dict[str, Any]:
    """Metadata of one path (not following a final symlink): see the field list at the top.

    Owner and group names come from the connection's id cache (see ``resolve_ids``). For a file,
    ``text`` reads up to 4 KiB (one open/read/close) unless ``sniff`` is false (then ``text`` is None),
    and ``text`` is None when the file is not readable. ``attr``: the path's ``lstat_path``, when the
    caller already has it (saves a round trip).
    """
    path = validate_path(path)
    if attr is None:
        attr = lstat_path(sftp, path)
    names = resolve_ids(sftp, [attr.st_uid], [attr.st_gid], run)
    meta = attr_metadata(path, attr, names)
    if meta["type"] == "symlink":
        meta["target"] = readlink(sftp, path)
    elif meta["type"] == "file":
        if run is not None:
            meta["etag"] = file_etag(run, path)
        text = _sniff_text(sftp, path) if sniff else None
        meta["mime"] = guess_mime(meta["name"], text)
        meta["text"] = text
    return meta


def readlink(sftp: paramiko.SFTPClient, path: str) -> str | None:
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


def lstat_or_none(sftp: paramiko.SFTPClient, path: str) -> paramiko.SFTPAttributes | None:
    try:
        return sftp.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise map_sftp_error(exc, path, "look at") from None
