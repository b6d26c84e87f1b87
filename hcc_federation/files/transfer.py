"""Reading and writing file content: streamed reads, atomic writes, the sweep of stale temporary files."""

from __future__ import annotations

import contextlib
import posixpath
import re
import stat
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import paramiko
from paramiko.sftp import CMD_EXTENDED_REPLY
from paramiko.sftp_file import SFTPFile

from hcc_federation.remote.paramiko_compat import (
    finish_pipelined_writes,
    forget_handle,
    open_exclusive,
    send_writes,
    sftp_extended,
)

from .errors import (
    AlreadyExists,
    InsufficientStorage,
    IsADirectory,
    PayloadTooLarge,
    PreconditionFailed,
    RangeNotSatisfiable,
    RemoteFileError,
    WriteFailed,
    classify_failure,
    link_failure,
    map_sftp_error,
)
from .metadata import Runner, file_etag, get_metadata, lstat_or_none, require_regular
from .paths import validate_path

if TYPE_CHECKING:
    from .leftovers import TempJournal

# 256 KiB chunks: big enough that per-chunk overhead vanishes, small enough for a WSGI server to stream.
DEFAULT_CHUNK = 256 * 1024
# Bytes requested at once while reading; bounds the memory of one download (see read_chunks).
READ_WINDOW = 4 * 1024 * 1024
# Temporary upload files: hidden, unique, and of fixed length, so a 255-byte target name still works.
TEMP_PREFIX = ".hcc-upload-"
# A temporary file untouched for a day was left by a dead link (a live upload writes to it all the
# time): the owner's next write into its directory removes it. That costs a `find` (4 ms on an idle
# bed), so a connection sweeps a directory at most once per SWEEP_INTERVAL, and sweeps what is older
# than a day less that interval (and a minute, as find counts whole minutes): whatever is a day old
# at a write was already that old at the last sweep, so after every write none is left.
SWEEP_INTERVAL = 3600
STALE_TEMP_MINUTES = 24 * 60 - SWEEP_INTERVAL // 60 - 1


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
        raise classify_failure(sftp, exc, path, "read") from None
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
        raise RangeNotSatisfiable(
            f"offset {offset} is beyond the end of {path} ({size} bytes)", path=path, size=size
        )
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
    journal: TempJournal | None = None,
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
    into the same directory by the same user sweeps it (once a day old), or hcc-cleanup removes it:
    ``journal`` records the temporary file before it is created and forgets it once it is renamed
    or removed, so what a dead link left stays on record (files.leftovers). The temporary file is
    created with the target's owner bits only (0600 for a new file), never readable by others
    before the final chmod; a new file then gets the mode a plain create would give it.
    """
    path = validate_path(path)
    if path == "/":
        raise IsADirectory("is a directory: /", path=path)
    attr = lstat_or_none(sftp, path)
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
    record = journal.started(temp) if journal is not None else None
    try:
        handle = create_exclusive(sftp, temp, private)
    except BaseException as exc:
        # over a dead link the OPEN may have created the file all the same: it stays on record
        if record is not None and link_failure(exc, path, "write") is None:
            journal.ended(record)
        if isinstance(exc, OSError):
            raise classify_failure(sftp, exc, directory, "create a file in") from None
        raise
    written = 0
    storing = True
    try:
        with _closing_unless_link_failed(handle, path):
            # Pipelined WRITEs (no wait for each status) as large as the server takes, sent without
            # paramiko's copies (send_writes); upload.UPLOAD_CHUNK reads request bodies in pieces of
            # OpenSSH's own limit, so that each piece goes out as one WRITE
            for data in chunks:
                if max_bytes is not None and written + len(data) > max_bytes:
                    raise PayloadTooLarge(f"the upload is larger than {max_bytes} bytes", path=path)
                written = send_writes(handle, written, data)
            finish_pipelined_writes(handle)
        # Belt and braces, as paramiko's own putfo(confirm=True) does: the size must be what we sent.
        stored_attr = sftp.stat(temp)
        stored = stored_attr.st_size
        if stored != written:
            raise InsufficientStorage(f"the cluster stored {stored} of {written} bytes of {path}", path=path)
        storing = False
        final = stat.S_IMODE(attr.st_mode or 0) if attr is not None else _new_file_mode(sftp, directory)
        if final != private:
            sftp.chmod(temp, final)
        current = lstat_or_none(sftp, target)
        if not overwrite and current is not None:
            raise AlreadyExists(f"already exists: {path}", path=path)
        _check_if_match(run, target, attr is not None and current is not None, if_match, path)
        if overwrite:
            sftp.posix_rename(temp, target)
        else:
            sftp.rename(temp, target)
        if record is not None:
            journal.ended(record)
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
        if _remove_quietly(sftp, temp) and record is not None:
            journal.ended(record)
        if isinstance(exc, OSError):
            if not overwrite and lstat_or_none(sftp, target) is not None:
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
            forget_handle(handle)
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
    under it, is never reused. paramiko has no public call for this (see paramiko_compat).
    """
    return open_exclusive(sftp, path, mode)


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


# Less free space than this, after a write failed, is taken for a full file system.
FULL_MARGIN = 1024 * 1024


def _file_system_full(sftp: paramiko.SFTPClient, directory: str) -> bool:
    """Whether the file system holding ``directory`` is (nearly) full, by OpenSSH's
    ``statvfs@openssh.com``; False when the server cannot tell."""
    try:
        kind, msg = sftp_extended(sftp, "statvfs@openssh.com", directory)
    except (OSError, EOFError, paramiko.SSHException):
        return False
    if kind != CMD_EXTENDED_REPLY:
        return False
    # f_bsize f_frsize f_blocks f_bfree f_bavail f_files f_ffree f_favail (PROTOCOL, OpenSSH)
    _bsize, frsize, _blocks, _bfree, bavail, _files, _ffree, favail = (msg.get_int64() for _ in range(8))
    return bavail * frsize < FULL_MARGIN or favail == 0


def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> bool:
    """Remove ``path`` if possible; whether it is gone. Best effort: the original failure is what
    the caller must hear about."""
    try:
        sftp.remove(path)
    except FileNotFoundError:
        return True
    except (OSError, EOFError, paramiko.SSHException):
        return False
    return True
