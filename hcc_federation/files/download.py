"""Downloads: Range, ETag and If-None-Match, and the streaming of a file's bytes (SFTP or `dd`)."""

from __future__ import annotations

import contextlib
import posixpath
import re
import urllib.parse
from collections.abc import Iterator

import paramiko
from pyramid.response import Response
from webob.byterange import ContentRange, Range
from webob.etag import ETagMatcher

from .. import files
from ..clusters import ClusterAccess

# What one read of the request body asks for, and one recv of a download: 256 KiB, as the domain code.
CHUNK = files.DEFAULT_CHUNK
# Downloads up to this size are read over SFTP on the channel already open for the stat; bigger ones
# are streamed by `dd` on an exec channel: 5x faster than paramiko's SFTP reads (bench/bench_files.py).
SMALL_DOWNLOAD = 1024 * 1024
# How long a finished `dd` may take to report its exit status before we stop waiting.
EXIT_STATUS_WAIT = 5.0


# Range, If-Range and If-None-Match are read with WebOb (webob.byterange, webob.etag). We do not
# use Response(conditional_response=True): it decides 304/206/416 when the body is already prepared
# (a SFTP read done or a `dd` channel open), answers 416 in text/plain, and its Range reading misses
# RFC 9110 14.1 in the places the adapter below covers.
_RANGE_SHAPE = re.compile(r"bytes=(?:\d+-\d*|-\d+)")
_DIGITS = re.compile(r"\d+")
# No file is 10**19 bytes (a 64-bit off_t ends at 9.2 * 10**18): a longer number is "beyond any end".
# int() of more than 4300 digits raises ValueError (Python's CVE-2020-10735 guard): webob's parse
# lets it through, a 500.
_POSITION_DIGITS = 19


def _position(digits: str) -> str:
    """A byte position of a Range header with at most 19 digits (leading zeros are allowed)."""
    digits = digits.lstrip("0") or "0"
    return digits if len(digits) <= _POSITION_DIGITS else str(10**_POSITION_DIGITS)


def parse_range(header: str, size: int, path: str) -> tuple[int, int] | None:
    """A single ``Range: bytes=...`` -> (start, end exclusive); None for several ranges (served whole).

    A malformed or unsatisfiable range is a 416 carrying ``Content-Range: bytes */size``.
    """
    value = header.strip().replace(" ", "")
    if "," in value:
        # several ranges would need multipart/byteranges; RFC 9110 lets a server answer with the whole
        # file (webob would serve the first range alone)
        return None
    wanted = None
    # webob matches a prefix ("bytes=1-4junk" is 1-4): the whole value must be one range
    if _RANGE_SHAPE.fullmatch(value):
        requested = Range.parse(_DIGITS.sub(lambda m: _position(m.group()), value))
        if requested is not None and requested.end is None and value.startswith("bytes=-"):
            suffix = -requested.start
            # webob reads "-0" as "from 0 on", and refuses a suffix longer than the file, which
            # RFC 9110 14.1.3 serves whole; a suffix of 0 selects nothing
            requested = Range(max(0, size - suffix), None) if suffix > 0 else None
        if requested is not None:
            wanted = requested.range_for_length(size)
    if wanted is None:
        raise files.RangeNotSatisfiable(
            f"range {header[:100]!r} cannot be served from {path} ({size} bytes)", path=path, size=size
        )
    return wanted


def _if_range_holds(request, response: Response) -> bool:
    """Whether a Range applies: no If-Range, or one that names this version by its strong ETag.

    Weak ETags never match (RFC 9110 13.1.5). A date never does either: Last-Modified has whole
    seconds, so two writes in one second share it and a piece of the new file would be served as a
    piece of the old one (the ETag has nanoseconds for that reason, metadata.FileVersion). webob's
    ``request.if_range`` would take a date, compare it with ``<=``, and a year past 9999 raises.
    """
    value = request.headers.get("If-Range")
    if value is None:
        return True
    value = value.strip()
    if not value.startswith(('"', "W/")):
        return False
    return response.etag_strong in ETagMatcher.parse(value, strong=True)


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


def serve_file(request, access: ClusterAccess, path: str, *, disposition: str = "attachment") -> Response:
    """A file's bytes as a streamed response (Range, ETag, If-None-Match), read through ``access``.

    The stat and the permission check run over SFTP, so a missing or unreadable file fails with
    404/403 before any header is sent. Small bodies are read on that SFTP channel; bigger ones are
    streamed by ``dd`` (with ``count`` capped at the size announced, so a growing file cannot
    overrun Content-Length) on an exec channel that holds one session slot until the body ends.
    """
    stack = contextlib.ExitStack()
    streaming = False
    try:
        sftp = stack.enter_context(access.sftp())
        _stat_regular(sftp, path)
        # the size that goes with the etag: both from the one stat of the file's version
        version = files.file_version(access.run, path)
        size = version.size
        etag = version.etag
        # webob compares If-None-Match weakly (RFC 9110 13.1.2), and "*" matches any etag
        if etag.strip('"') in request.if_none_match:
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
        if range_header and _if_range_holds(request, response):
            wanted = parse_range(range_header, size, path)
            if wanted is not None:
                start, end = wanted
                response.status = 206
                response.content_range = ContentRange(start, end, size)
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
            channel = stack.enter_context(access.stream(argv))
            response.app_iter = _ChannelBody(stack, channel, length, path)
            streaming = True
        response.content_length = length
        return response
    finally:
        if not streaming:
            stack.close()
