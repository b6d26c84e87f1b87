"""Streaming multipart/form-data (hcc_federation.files.upload.form_parts), without a server."""

from __future__ import annotations

import urllib.parse

import pytest

from hcc_federation.api.error_map import mapping_for
from hcc_federation.errors import InvalidArgument
from hcc_federation.files.upload import ClientDisconnected, form_parts, part_filename

BOUNDARY = b"hcc-unit-boundary"


def body(parts: list[tuple[bytes, bytes]], boundary: bytes = BOUNDARY) -> bytes:
    """A multipart body from (Content-Disposition value, data) pairs."""
    out = b"preamble that is ignored\r\n"
    for disposition, data in parts:
        out += b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + data + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def chunked(data: bytes, size: int):
    return iter([data[i : i + size] for i in range(0, len(data), size)])


def read_all(chunks, boundary: bytes = BOUNDARY) -> list[tuple[str | None, str | None, bytes]]:
    return [(part.name, part_filename(part), b"".join(data)) for part, data in form_parts(chunks, boundary)]


# a delimiter split across chunks at every offset, and a body that holds a near-delimiter
TRICKY = b"two\r\n--not a boundary\r\n--hcc-unit-boundar"


@pytest.mark.parametrize("size", [1, 2, 7, 18, 19, 64, 10_000])
def test_parts_survive_any_chunking(size):
    data = body(
        [
            (b'form-data; name="file"; filename="a.txt"', TRICKY),
            (b'form-data; name="file"; filename="b"', b""),
        ]
    )
    assert read_all(chunked(data, size)) == [("file", "a.txt", TRICKY), ("file", "b", b"")]


def test_memory_holds_about_one_chunk_of_a_large_part():
    chunk = 64 * 1024
    big = b"x" * (4 * 1024 * 1024)
    data = body([(b'form-data; name="file"; filename="big"', big)])
    seen = 0
    for _, part_body in form_parts(chunked(data, chunk), BOUNDARY):
        for piece in part_body:
            # the parser hands on what it read, never the whole part
            assert len(piece) <= chunk + len(BOUNDARY) + 8
            seen += len(piece)
    assert seen == len(big)


def test_an_unread_body_is_skipped():
    data = body(
        [(b'form-data; name="skip"', b"s" * 1000), (b'form-data; name="file"; filename="f"', b"kept")]
    )
    names = []
    for part, part_body in form_parts(chunked(data, 100), BOUNDARY):
        names.append(part.name)
        if part.name == "file":
            assert b"".join(part_body) == b"kept"
    assert names == ["skip", "file"]


def test_filenames_browser_escapes_rfc5987_and_latin1():
    quoted = urllib.parse.quote('say "%22" é.txt', safe="")
    data = body(
        [
            ('form-data; name="file"; filename="say %22hi%22 é.txt"'.encode(), b"1"),
            (f'form-data; name="file"; filename="x"; filename*=UTF-8\'\'{quoted}'.encode(), b"2"),
            ('form-data; name="file"; filename="caf\xe9.txt"'.encode("latin-1"), b"3"),
            (b'form-data; name="file"', b"4"),
        ]
    )
    assert [name for _, name, _ in read_all(chunked(data, 33))] == [
        'say "hi" é.txt',
        'say "%22" é.txt',
        "café.txt",
        None,
    ]


def test_bad_filename_star_is_a_400():
    data = body([(b"form-data; name=\"file\"; filename*=UTF-8''%ff%fe", b"x")])
    with pytest.raises(InvalidArgument) as caught:
        read_all(chunked(data, 1000))
    assert caught.value.field == "file"
    assert mapping_for(caught.value).status == 400


def test_a_body_cut_before_its_closing_delimiter_fails_inside_the_part():
    data = body(
        [
            (b'form-data; name="file"; filename="done"', b"complete"),
            (b'form-data; name="file"; filename="cut"', b"y" * 5000),
        ]
    )
    cut = data[:-100]
    got = []
    with pytest.raises(ClientDisconnected):
        for part, part_body in form_parts(chunked(cut, 512), BOUNDARY):
            got.append(part.filename)
            # the cut part never ends normally: its body raises while it is read
            b"".join(part_body)
            got.append("complete:" + part.filename)
    assert got == ["done", "complete:done", "cut"]


@pytest.mark.parametrize(
    "data",
    [
        # no Content-Disposition at all
        b"--" + BOUNDARY + b"\r\nContent-Type: text/plain\r\n\r\nx\r\n--" + BOUNDARY + b"--\r\n",
        # a header line without a colon
        b"--" + BOUNDARY + b"\r\nnot a header\r\n\r\nx\r\n--" + BOUNDARY + b"--\r\n",
        # a header line beyond the cap
        b"--"
        + BOUNDARY
        + b'\r\nContent-Disposition: form-data; name="'
        + b"n" * 20_000
        + b'"\r\n\r\nx\r\n--'
        + BOUNDARY
        + b"--\r\n",
    ],
)
def test_malformed_bodies_are_400s_that_name_the_body(data):
    with pytest.raises(InvalidArgument) as caught:
        read_all(chunked(data, 4096))
    assert not isinstance(caught.value, ClientDisconnected)
    assert caught.value.field == "body"
    assert mapping_for(caught.value).status == 400
