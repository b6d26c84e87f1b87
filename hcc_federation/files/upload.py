"""Uploads: the request body in counted chunks and a streaming multipart/form-data reader."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator

from webob.request import DisconnectionError

from .. import files
from ..errors import DomainError, InvalidArgument
from .download import CHUNK

# A multipart part's header block larger than this is refused (browsers send a few hundred bytes).
MAX_PART_HEADERS = 16 * 1024


class ClientDisconnected(InvalidArgument):
    """The client sent less than it announced. It is gone; the status only reaches the log."""

    field = "body"


class UnsupportedMediaType(DomainError):
    """The body is not of a media type this route takes."""

    field = "Content-Type"


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
            raise InvalidArgument("filename* is not valid percent-encoded text", field="file") from None
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
                raise InvalidArgument("malformed multipart delimiter line", field="body")
        padding, _, self._buffer = self._buffer.partition(b"\r\n")
        if padding.strip(b" \t"):
            raise InvalidArgument("malformed multipart delimiter line", field="body")
        return True

    def _headers(self) -> dict[str, str]:
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > MAX_PART_HEADERS:
                raise InvalidArgument("a multipart part has too many headers", field="body")
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
                raise InvalidArgument("malformed multipart part header", field="body")
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
        raise InvalidArgument("the multipart boundary is missing or invalid", field="Content-Type")
    return boundary.encode("ascii")
