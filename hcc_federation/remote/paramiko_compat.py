"""Every use of paramiko's private internals, fenced here and checked against one paramiko minor version.

paramiko has no public call for several things this service needs (below). Each helper names the
internals it uses; ``check_paramiko_version`` refuses to start on a minor version they were not
checked against, and setup.py pins that minor version, so an upgrade is a deliberate act: read
paramiko's changelog for these names, run tests/functional (test_remote_pool, test_memory,
test_api_files, test_faults), then raise TESTED_MINOR and the pin together.

Internals used: ``Channel._wait_for_event`` (replaced, bounded), ``Channel.event``/``event_ready``,
``Transport.channels_seen`` and ``Transport.lock``, ``Channel.lock``/``eof_sent``/``out_window_size``,
``Transport.clear_to_send``/``clear_to_send_lock``/``_send_message``, ``SFTPClient._request`` (extended
requests, exclusive OPEN with a mode), ``SFTPFile(...)`` built from a raw handle, ``SFTPFile._closed``,
``SFTPFile._reqs`` with ``SFTPClient._read_response``, and for WRITEs sent straight into the channel
(``send_writes``) ``SFTPClient._lock``/``request_number``/``_expecting`` and ``SFTPFile.handle``.

Ordered sends -- channel writes that cannot overtake paramiko's reply to the server's CLOSE
(paramiko #1115, #1705).

paramiko decides a DATA or EOF message under the channel's lock but sends it after releasing the
lock. If the command exits at that moment, paramiko's transport thread answers the server's
CHANNEL_CLOSE with its own CLOSE in between, our DATA/EOF goes out after it, and OpenSSH, which
frees the channel on our CLOSE, disconnects the whole connection ("ieof packet referred to
nonexistent channel"), killing every other channel of that user. On a shared, pooled transport
that turned a fast `echo` into an outage for all concurrent commands (seen on the test bed: 29
failed commands and 8 dropped connections in 1,800 commands run 30 at a time; none with this).

The helpers below hold the channel's lock from the decision until the message is handed to the
socket, so the CLOSE reply (which needs that lock) can only come before the decision (we then see
the channel closed and send nothing) or after our message. They never wait for a key exchange
while holding the lock (paramiko's reason for releasing it): they check ``clear_to_send`` without
blocking and retry outside the lock. They use paramiko internals (``lock``, ``eof_sent``,
``out_window_size``, ``clear_to_send``, ``_send_message``), checked against paramiko 5.1.
"""

import contextlib
import functools
import itertools
import struct
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import paramiko
from paramiko.common import cMSG_CHANNEL_DATA, cMSG_CHANNEL_EOF, cMSG_CHANNEL_REQUEST
from paramiko.message import Message
from paramiko.sftp import (
    CMD_CLOSE,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_HANDLE,
    CMD_NAME,
    CMD_OPEN,
    CMD_OPENDIR,
    CMD_READDIR,
    CMD_STATUS,
    CMD_WRITE,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_WRITE,
)
from paramiko.sftp_file import SFTPFile

T = TypeVar("T")

# The paramiko minor version whose internals this module was read against (setup.py pins the same).
TESTED_MINOR = (5, 1)


class UnsupportedParamiko(RuntimeError):
    """The installed paramiko is not the minor version this module was checked against."""


def check_paramiko_version(version: str | None = None) -> None:
    """Refuse to run on a paramiko whose minor version differs from TESTED_MINOR (called at start-up).

    A private name that changed would not fail at import: it would fail (or silently do nothing,
    for an attribute we set) on the first request that needs it, e.g. a listing that hangs on a
    dead link because the bounded wait no longer replaces anything.
    """
    version = version or paramiko.__version__
    try:
        found = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        found = ()
    if found != TESTED_MINOR:
        tested = ".".join(map(str, TESTED_MINOR))
        below = f"{TESTED_MINOR[0]}.{TESTED_MINOR[1] + 1}"
        raise UnsupportedParamiko(
            f"paramiko {version} is installed, but hcc_federation.remote.paramiko_compat was checked "
            f"against paramiko {tested}.x only: install 'paramiko>={tested},<{below}', "
            "or re-check that module's internals and raise TESTED_MINOR with setup.py's pin"
        )


def _send_locked(
    channel: paramiko.Channel, build: Callable[[], tuple[paramiko.Message | None, T]], closed: T
) -> T:
    """Build a message under the channel's lock and send it before releasing the lock."""
    transport = channel.get_transport()
    while transport is not None and transport.is_active():
        with channel.lock:
            if channel.closed:
                return closed
            lock: threading.Lock = transport.clear_to_send_lock
            with lock:
                if transport.clear_to_send.is_set():
                    message, result = build()
                    if message is not None:
                        transport._send_message(message)
                    return result
        # a key exchange is running: wait for it without holding the channel's lock
        transport.clear_to_send.wait(0.1)
    return closed


def send_data(channel: paramiko.Channel, data: bytes | memoryview) -> int:
    """Send as much of ``data`` as the server's window allows now, without blocking.

    Returns the number of bytes sent: 0 when the window is full, -1 when the channel is closed
    or its EOF already sent (the command will read no more).
    """

    def build() -> tuple[paramiko.Message | None, int]:
        if channel.eof_sent:
            return None, -1
        size = min(len(data), channel.out_window_size, channel.out_max_packet_size - 64)
        if size <= 0:
            return None, 0
        channel.out_window_size -= size
        message = paramiko.Message()
        message.add_byte(cMSG_CHANNEL_DATA)
        message.add_int(channel.remote_chanid)
        message.add_string(bytes(data[:size]))
        return message, size

    return _send_locked(channel, build, -1)


def send_eof(channel: paramiko.Channel) -> None:
    """Tell the command its stdin is finished (no-op if the channel is closed or EOF was sent)."""

    def build() -> tuple[paramiko.Message | None, None]:
        if channel.eof_sent:
            return None, None
        channel.eof_sent = True
        message = paramiko.Message()
        message.add_byte(cMSG_CHANNEL_EOF)
        message.add_int(channel.remote_chanid)
        return message, None

    _send_locked(channel, build, None)


def send_signal(channel: paramiko.Channel, name: str = "TERM") -> bool:
    """Ask sshd to send a signal to the channel's command (RFC 4254 6.9; OpenSSH >= 7.9 honours it).

    Returns False if the channel was already closed; sshd's answer is not awaited.
    """

    def build() -> tuple[paramiko.Message | None, bool]:
        message = paramiko.Message()
        message.add_byte(cMSG_CHANNEL_REQUEST)
        message.add_int(channel.remote_chanid)
        message.add_string("signal")
        message.add_boolean(False)
        message.add_string(name)
        return message, True

    return _send_locked(channel, build, False)


# ------------------------------------------------------------------------------------ channels


def bound_channel_waits(channel: paramiko.Channel, seconds: float) -> None:
    """Make the channel's waits for request answers (exec, subsystem) give up after ``seconds``.

    paramiko waits for those answers with no timeout at all (``Channel._wait_for_event``): over a
    blackholed link a job list or a listing hung until the client gave up (30 s and counting, with
    a 5 s command_timeout). The replacement raises TimeoutError instead.
    """
    channel._wait_for_event = functools.partial(_wait_for_event_within, channel, seconds)


def _wait_for_event_within(channel: paramiko.Channel, seconds: float) -> None:
    """paramiko's Channel._wait_for_event, bounded: TimeoutError when no answer came in time."""
    if not channel.event.wait(seconds):
        raise TimeoutError(f"no answer from the server within {seconds:g} s")
    if channel.event_ready:
        return
    exc = channel.transport.get_exception()
    raise exc if exc is not None else paramiko.SSHException("Channel closed.")


def forget_old_channels(transport: paramiko.Transport, remembered: int) -> None:
    """Drop the oldest ids from paramiko's record of channels seen, past ``remembered``.

    paramiko keeps every channel id a transport has opened (``Transport.channels_seen``) and never
    forgets one (see pool.CHANNELS_REMEMBERED for the figures). Pruned in batches of a quarter, so
    that the walk is rare; under the transport's lock, which paramiko holds while it adds an id
    (its reader thread only looks ids up).
    """
    seen = transport.channels_seen
    excess = len(seen) - remembered
    if excess < max(remembered // 4, 1):
        return
    with transport.lock:
        # dicts keep insertion order: the first ids are the oldest
        for chanid in list(itertools.islice(seen, len(seen) - remembered)):
            del seen[chanid]


# ---------------------------------------------------------------------------------------- SFTP


def sftp_extended(sftp: paramiko.SFTPClient, name: str, *args: object) -> tuple[int, Message]:
    """An SFTP extended request (e.g. OpenSSH's ``statvfs@openssh.com``): (reply kind, message).

    paramiko has no public call for extensions it does not wrap; ``_request`` is what its own
    ``posix_rename`` uses.
    """
    return sftp._request(CMD_EXTENDED, name, *args)


class MalformedAnswer(paramiko.SSHException):
    """The server's SFTP answer does not hold what its kind promises (a packet cut short, a length
    past its end): a broken link or server, not a file system answer. An SSHException, so that
    files.errors.link_failure maps it as a lost link (the session is not kept)."""


def read_directory(
    sftp: paramiko.SFTPClient, path: str, depth: int = 16
) -> Iterator[paramiko.SFTPAttributes]:
    """The entries of a directory (without ``.`` and ``..``) as paramiko's SFTPAttributes.

    See ``directory_answers`` for the reading; ``read_directory_rows`` is the cheaper form for
    listings (no object per entry).
    """
    with contextlib.closing(directory_answers(sftp, path, depth)) as answers:
        for count, data in answers:
            for attr in _name_entries(data, count):
                if attr.filename not in (".", ".."):
                    yield attr


def read_directory_rows(
    sftp: paramiko.SFTPClient, path: str, depth: int = 16
) -> Iterator[list["DirectoryRow"]]:
    """The entries of a directory (without ``.`` and ``..``), a list of DirectoryRow per server answer.

    See ``directory_answers`` for the reading and ``name_rows`` for the rows. Raises OSError as
    paramiko does, UnicodeDecodeError for a name that is not UTF-8, MalformedAnswer for a garbled
    answer.
    """
    with contextlib.closing(directory_answers(sftp, path, depth)) as answers:
        for count, data in answers:
            yield name_rows(data, count)


def directory_answers(sftp: paramiko.SFTPClient, path: str, depth: int = 16) -> Iterator[tuple[int, bytes]]:
    """The SSH_FXP_NAME answers of a directory's READDIRs, (count, entries' bytes), up to ``depth`` in flight.

    paramiko's ``listdir_iter`` reads its read-ahead answers around its own bookkeeping: each stays
    listed as awaited for the session's life, and the ones after the end are read only by the next
    request. A session kept open between requests (ConnectionPool.open_sftp) must be left with no
    answer outstanding, so this reads every answer it asked for, through ``_read_response``, and
    closes the handle, also when the caller stops early (the generator is closed). Raises OSError
    as paramiko does (e.g. FileNotFoundError for a missing path).
    """
    kind, msg = sftp._request(CMD_OPENDIR, path)
    if kind != CMD_HANDLE:
        raise paramiko.SFTPError("expected a handle")
    handle = msg.get_binary()
    pending: list[int] = []
    done = False
    # two in flight at first (a small directory: its names, then the end), twice as many after each
    # answer with names, up to depth: each READDIR costs a packet each way, even past the end
    window = min(2, depth)
    try:
        while not done or pending:
            while not done and len(pending) < window:
                pending.append(sftp._async_request(type(None), CMD_READDIR, handle))
            num = pending.pop(0)
            try:
                kind, msg = sftp._read_response(num)
            except EOFError:  # the end of the directory: a status answer, converted by paramiko
                done = True
                continue
            if done:
                continue  # an answer to a read-ahead sent before the end was seen
            if kind != CMD_NAME:
                raise paramiko.SFTPError("expected a name list")
            window = min(window * 2, depth)
            count = msg.get_int()
            yield count, msg.get_remainder()
    except GeneratorExit:
        # the caller stopped early: read the answers still in flight, then close
        _finish_directory(sftp, handle, pending)
        raise
    except BaseException:
        # a request failed or timed out: more waiting would only add timeouts, and the session,
        # with answers outstanding, is not kept
        raise
    else:
        _finish_directory(sftp, handle, pending)


_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_FLAG_SIZE, _FLAG_UIDGID, _FLAG_PERMISSIONS, _FLAG_AMTIME = 0x1, 0x2, 0x4, 0x8
_FLAG_EXTENDED = 0x80000000
# The attributes every OpenSSH entry has: flags, size, uid, gid, permissions, atime, mtime.
_ALL_FOUR = _FLAG_SIZE | _FLAG_UIDGID | _FLAG_PERMISSIONS | _FLAG_AMTIME
_ATTRS = struct.Struct(">IQIIIII")

# One directory entry as a listing sorts it: (rank, name, mode, size, uid, gid, mtime). rank is 0
# for a directory, 1 otherwise, so that sorting rows puts directories first, then names in code
# point order (names are unique in a directory: tuples never compare past the name). An attribute
# the server left out reads as 0 (mode, size, mtime) or -1 (uid, gid). A tuple rather than an
# object: a deep page of a huge directory holds offset + limit of them.
DirectoryRow = tuple[int, str, int, int, int, int, int]
_S_IFMT, _S_IFDIR = 0o170000, 0o040000


def name_rows(data: bytes, count: int) -> list[DirectoryRow]:
    """The ``count`` entries of an SSH_FXP_NAME answer (the bytes after its count), as DirectoryRows.

    Skips ``.`` and ``..``. Reads what ``SFTPAttributes._from_msg`` reads, with one struct unpack
    for the attributes OpenSSH always sends: paramiko's Message reads each field through a BytesIO,
    and an SFTPAttributes per entry cost ~10 us of a 10,000-entry listing's time. Names must be
    UTF-8 (UnicodeDecodeError otherwise); long names are skipped; extended attributes are read past.
    MalformedAnswer when the bytes end before ``count`` entries (a length past the end, a short
    field). Bytes after the last entry are ignored, as paramiko ignores them.
    """
    rows: list[DirectoryRow] = []
    append = rows.append
    u32, attrs = _U32.unpack_from, _ATTRS.unpack_from
    end = len(data)
    at = 0
    try:
        for _ in range(count):
            (length,) = u32(data, at)
            at += 4 + length
            if at > end:
                raise MalformedAnswer(f"an SFTP name list ends inside a name ({end} bytes)")
            raw = data[at - length : at]
            (length,) = u32(data, at)
            at += 4 + length  # the long name: ls -l's line, of no use here
            (flags,) = u32(data, at)
            if flags == _ALL_FOUR:
                _, size, uid, gid, mode, _, mtime = attrs(data, at)
                at += 32
            else:
                at += 4
                size, uid, gid, mode, mtime, at = _some_attributes(data, at, flags)
            if raw == b"." or raw == b"..":
                continue
            append((0 if mode & _S_IFMT == _S_IFDIR else 1, raw.decode("utf-8"), mode, size, uid, gid, mtime))
    except struct.error:
        raise MalformedAnswer(f"an SFTP name list is cut short ({end} bytes for {count} entries)") from None
    if at > end:
        raise MalformedAnswer(f"an SFTP name list ends inside an entry ({end} bytes)")
    return rows


def _some_attributes(data: bytes, at: int, flags: int) -> tuple[int, int, int, int, int, int]:
    """(size, uid, gid, mode, mtime, the offset after them) of an attributes block without all four
    usual ones, each absent one as DirectoryRow says; struct.error if the bytes end first."""
    size = mode = mtime = 0
    uid = gid = -1
    if flags & _FLAG_SIZE:
        (size,) = _U64.unpack_from(data, at)
        at += 8
    if flags & _FLAG_UIDGID:
        uid, gid = struct.unpack_from(">II", data, at)
        at += 8
    if flags & _FLAG_PERMISSIONS:
        (mode,) = _U32.unpack_from(data, at)
        at += 4
    if flags & _FLAG_AMTIME:
        (mtime,) = _U32.unpack_from(data, at + 4)
        at += 8
    if flags & _FLAG_EXTENDED:
        (pairs,) = _U32.unpack_from(data, at)
        at += 4
        for _ in range(2 * pairs):
            (length,) = _U32.unpack_from(data, at)
            at += 4 + length
            if at > len(data):
                raise struct.error("an extended attribute past the end")
    return size, uid, gid, mode, mtime, at


def _name_entries(data: bytes, count: int) -> Iterator[paramiko.SFTPAttributes]:
    """The ``count`` entries of an SSH_FXP_NAME answer (after its count), as paramiko's SFTPAttributes.

    What ``SFTPAttributes._from_msg`` reads, with struct on the bytes: paramiko's Message reads each
    field through a BytesIO, which made parsing most of a 10,000-entry listing's time. Names must
    be UTF-8 (UnicodeDecodeError otherwise, as paramiko's ``get_text``); the long name is skipped
    (kept empty), and extended attributes are read past.
    """
    u32, u64 = _U32.unpack_from, _U64.unpack_from
    at = 0
    for _ in range(count):
        (length,) = u32(data, at)
        filename = data[at + 4 : at + 4 + length].decode("utf-8")
        at += 4 + length
        (length,) = u32(data, at)
        at += 4 + length  # the long name: ls -l's line, of no use here
        (flags,) = u32(data, at)
        at += 4
        attr = paramiko.SFTPAttributes()
        attr.filename, attr.longname, attr._flags = filename, "", flags
        if flags & _FLAG_SIZE:
            (attr.st_size,) = u64(data, at)
            at += 8
        if flags & _FLAG_UIDGID:
            attr.st_uid, attr.st_gid = u32(data, at)[0], u32(data, at + 4)[0]
            at += 8
        if flags & _FLAG_PERMISSIONS:
            (attr.st_mode,) = u32(data, at)
            at += 4
        if flags & _FLAG_AMTIME:
            attr.st_atime, attr.st_mtime = u32(data, at)[0], u32(data, at + 4)[0]
            at += 8
        if flags & _FLAG_EXTENDED:
            (pairs,) = u32(data, at)
            at += 4
            for _ in range(2 * pairs):
                (length,) = u32(data, at)
                at += 4 + length
        yield attr


def _finish_directory(sftp: paramiko.SFTPClient, handle: bytes, pending: list[int]) -> None:
    for num in pending:
        with contextlib.suppress(EOFError):
            sftp._read_response(num)
    sftp._request(CMD_CLOSE, handle)


def open_exclusive(sftp: paramiko.SFTPClient, path: str, mode: int) -> SFTPFile:
    """OPEN with WRITE|CREAT|EXCL and the permission bits in the request's attrs, as an SFTPFile.

    paramiko's ``open`` sends an empty attrs block; ``_request`` and building the SFTPFile from the
    returned handle are what its own ``open`` does.
    """
    attrs = paramiko.SFTPAttributes()
    attrs.st_mode = mode
    kind, msg = sftp._request(CMD_OPEN, path, SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL, attrs)
    if kind != CMD_HANDLE:
        raise paramiko.SFTPError("expected a handle")
    return SFTPFile(sftp, msg.get_binary(), "wb")


# The largest WRITE we send: OpenSSH's sftp-server takes messages up to 256 KiB and says (limits@openssh.com)
# 261,120 bytes of data; paramiko sends 32 KiB, which the channel's 32 KiB packets split in two.
MAX_WRITE_REQUEST = 256 * 1024


def write_request_size(sftp: paramiko.SFTPClient) -> int:
    """The data size of one WRITE on this session: the server's own limit when it states one.

    OpenSSH (8.7 and later) answers ``limits@openssh.com`` with its maximum write length; with
    261,120 bytes instead of paramiko's 32,768 a 256 MiB upload is 1,029 WRITEs instead of 8,192, and
    each fills whole SSH packets (8 of the channel's 32 KiB) instead of one full and one of 64 bytes.
    A server without the extension (an unsupported-operation status) gets paramiko's 32 KiB, which
    every SFTP server takes. Asked once per SFTP session (the pool keeps sessions open).
    """
    known = getattr(sftp, "_hcc_write_size", None)
    if known is not None:
        return known
    size = SFTPFile.MAX_REQUEST_SIZE
    try:
        kind, msg = sftp._request(CMD_EXTENDED, "limits@openssh.com")
    except OSError as exc:
        if exc.errno is not None or type(exc) is not OSError:
            raise  # not the server's status answer (a timeout, a closed channel): the caller maps it
        # a status without errno: the server refused the extension (SSH_FX_OP_UNSUPPORTED)
    else:
        if kind == CMD_EXTENDED_REPLY:
            msg.get_int64()  # max-packet-length
            msg.get_int64()  # max-read-length
            stated = msg.get_int64()
            if stated:
                size = max(size, min(stated, MAX_WRITE_REQUEST))
    sftp._hcc_write_size = size
    return size


def forget_handle(handle: SFTPFile) -> None:
    """Mark a handle closed without sending CLOSE (the link is gone; the server drops it with the
    channel). paramiko's BufferedFile flag: also keeps ``__del__`` from trying to close it later."""
    handle._closed = True


# Bytes of WRITEs left unanswered before send_writes stops to read the oldest answer: twice what
# sshd's 2 MiB channel window lets through at once, so the cluster never waits for us (16 WRITEs of
# OpenSSH's 255 KiB; 128 of 32 KiB on a server that does not state its limit).
WRITES_IN_FLIGHT_BYTES = 4 * 1024 * 1024
_WRITE_HEADER = struct.Struct(">IBII")  # length, SSH_FXP_WRITE, request id, the handle's length
_WRITE_OFFSET = struct.Struct(">QI")  # offset, the data's length


def write_header(request: int, handle: bytes, offset: int, length: int) -> bytes:
    """The bytes of an SSH_FXP_WRITE request before its ``length`` bytes of data (SFTP v3, 6.4)."""
    size = 1 + 4 + 4 + len(handle) + 8 + 4 + length
    return (
        _WRITE_HEADER.pack(size, CMD_WRITE, request, len(handle))
        + handle
        + _WRITE_OFFSET.pack(offset, length)
    )


def send_writes(handle: SFTPFile, offset: int, data: bytes | memoryview) -> int:
    """Send ``data`` at ``offset`` as pipelined WRITEs of ``write_request_size``: the next offset.

    The same requests as ``SFTPFile.write`` with ``set_pipelined``, without paramiko's copies:
    its WRITE is built in a Message (a copy), prefixed with its length (another), and handed to
    the channel in packets through ``out = out[n:]`` (a copy of the rest after each 32 KiB packet:
    about four copies of every byte of a 255 KiB WRITE), then each packet is sliced and copied
    into its own Message. Here a WRITE's header goes out with the first packet of its data, and
    the data in ``memoryview`` slices that ``Channel.send`` copies once into each packet. 256 MiB
    from memory over the pool's connection, both ways in turns (four runs of 5-8 each, load
    average 7-19 on the 2 shared cores): medians of 0.35/0.44/0.48/0.35 s of CPU in the writing
    thread instead of 0.41/0.53/0.50/0.38 s, 138/75/50/106 MiB/s instead of 109/58/49/98. A small
    gain, which the shared machine's noise can hide (bench/README.md, bench_upload_floors.py); what
    is left is per SSH packet (8,192 of sshd's 32 KiB for 256 MiB): paramiko's Message and
    Packetizer in Python, AES-GCM, the socket.
    The answers are read as they arrive, and the oldest awaited past ``WRITES_IN_FLIGHT_BYTES``
    (a failure raises there, as paramiko's ``_read_response`` does); ``finish_pipelined_writes``
    reads the rest. The requests are registered in ``handle._reqs`` as paramiko's own, so its
    ``close()`` also reads what is left after a failure.
    """
    sftp = handle.sftp
    channel: paramiko.Channel = sftp.sock
    view = memoryview(data).cast("B")
    step = write_request_size(sftp)
    in_flight = max(WRITES_IN_FLIGHT_BYTES // step, 1)
    pending = handle._reqs
    for start in range(0, len(view), step):
        piece = view[start : start + step]
        with sftp._lock:
            request = sftp.request_number
            sftp._expecting[request] = type(None)
            sftp.request_number += 1
        pending.append(request)
        header = write_header(request, handle.handle, offset + start, len(piece))
        first = max(channel.out_max_packet_size - 64 - len(header), 0)
        _send_all(channel, b"".join((header, piece[:first])))
        _send_all(channel, piece[first:])
        while pending and (len(pending) > in_flight or channel.recv_ready()):
            kind, _ = sftp._read_response(pending.popleft())
            if kind != CMD_STATUS:
                raise paramiko.SFTPError("expected a status for a WRITE")
    return offset + len(view)


def _send_all(channel: paramiko.Channel, data: bytes | memoryview) -> None:
    """``Channel.sendall``, except that a channel closed meanwhile raises (as paramiko's SFTP does)
    instead of sending nothing forever; ``data`` sliced as given (a memoryview: no copies)."""
    while len(data):
        sent = channel.send(data)
        if sent <= 0:
            raise EOFError("the SFTP channel closed during a write")
        data = data[sent:]


def finish_pipelined_writes(handle: SFTPFile) -> None:
    """Wait for the status of every WRITE still in flight, raising the first failure.

    paramiko 5.1 checks pipelined WRITE statuses only when over 100 are queued, and ``close()``
    discards the rest: on a full disk the tail of a file was silently lost (seen on a 1 MiB tmpfs).
    This drains the queue (``_reqs``) as paramiko's own unpipelined ``_write`` does; responses
    arrive in order.
    """
    handle.flush()
    pending = handle._reqs
    while pending:
        kind, _ = handle.sftp._read_response(pending.popleft())
        if kind != CMD_STATUS:
            raise paramiko.SFTPError("expected a status for a WRITE")


class RekeySafeTransport(paramiko.Transport):
    """paramiko's Transport, except that its own reader thread never waits for a key exchange.

    When a channel closes, paramiko's reader thread answers with CLOSE through ``_send_user_message``,
    which waits until a key exchange in progress is over; but during a re-key (paramiko starts one
    every 512 MiB) it is this very thread that must read the exchange's answer, so it waited out
    ``clear_to_send_timeout`` (30 s) and killed the connection: 3 of 12 downloads of 256 MiB on one
    pooled connection ended short, with "Key-exchange timed out waiting for key negotiation". A
    message the reader thread sends during an exchange is now queued, and sent once the new keys
    are in place (in order, before the thread reads anything else).
    """

    # AES-GCM first (paramiko 5.1 lists it last, after CTR with a separate HMAC): one AEAD pass per
    # packet on both ends instead of AES-CTR plus HMAC-SHA2. A 256 MiB SFTP upload to the bed's sshd
    # took 0.36-0.44 s of this process's CPU instead of 0.54-0.63 s, and sshd's side is cheaper too
    # (OpenSSH's own client prefers chacha20-poly1305, then CTR+UMAC/ETM, none of which paramiko has).
    # A server without GCM (older than OpenSSH 6.2) still negotiates CTR, which follows in the list.
    _preferred_ciphers = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com") + tuple(
        name for name in paramiko.Transport._preferred_ciphers if "-gcm@" not in name
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._hcc_deferred: list = []
        # paramiko pads each outgoing packet with os.urandom unless the cipher is CTR ("sdctr": the
        # padding is encrypted as a key stream, so its content does not matter; OpenSSH does the
        # same). GCM encrypts the same way, but paramiko does not say so: a 256 MiB upload made
        # 10,430 getrandom calls, 0.49 s of 3.2 s on a loaded machine. Its only use is that padding.
        packetizer = self.packetizer
        set_outbound = packetizer.set_outbound_cipher

        def set_outbound_cipher(*args, sdctr: bool = False, aead: bool = False, **kwargs) -> None:
            set_outbound(*args, sdctr=sdctr or aead, aead=aead, **kwargs)

        packetizer.set_outbound_cipher = set_outbound_cipher

    def _send_user_message(self, data) -> None:
        if threading.current_thread() is self:
            with self.clear_to_send_lock:
                if not self.clear_to_send.is_set():
                    self._hcc_deferred.append(data)
                    return
        super()._send_user_message(data)

    def _parse_newkeys(self, m) -> None:
        super()._parse_newkeys(m)
        with self.clear_to_send_lock:
            deferred, self._hcc_deferred = self._hcc_deferred, []
            for data in deferred:
                self._send_message(data)
