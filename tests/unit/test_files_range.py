"""Range headers of downloads (hcc_federation.files.download.parse_range), without a server."""

import pytest
from pyramid.request import Request
from pyramid.response import Response

from hcc_federation import files
from hcc_federation.files.download import _if_range_holds, parse_range

HUGE = "9" * 5000  # past Python's 4300-digit limit of int(): a ValueError, and so a 500, before


def test_ranges_within_the_file():
    assert parse_range("bytes=1-4", 10, "/f") == (1, 5)
    assert parse_range("bytes=7-", 10, "/f") == (7, 10)
    assert parse_range("bytes=-3", 10, "/f") == (7, 10)
    assert parse_range("bytes=2-99", 10, "/f") == (2, 10)
    assert parse_range("bytes=0-1,3-4", 10, "/f") is None  # several: served whole


@pytest.mark.parametrize(
    ("header", "wanted"),
    [
        # a last position past the end is the end (RFC 9110 14.1.2), however long its number
        (f"bytes=0-{HUGE}", (0, 10)),
        # a suffix longer than the file is the whole file
        (f"bytes=-{HUGE}", (0, 10)),
        # leading zeros are allowed by the grammar: the number is small
        (f"bytes={'0' * 5000}3-{'0' * 5000}4", (3, 5)),
    ],
)
def test_absurdly_long_numbers_mean_what_they_say(header, wanted):
    assert parse_range(header, 10, "/f") == wanted


@pytest.mark.parametrize("header", [f"bytes={HUGE}-", f"bytes={HUGE}-{HUGE}", f"bytes={HUGE}0-{HUGE}"])
def test_a_first_position_past_any_file_is_unsatisfiable(header):
    with pytest.raises(files.RangeNotSatisfiable) as caught:
        parse_range(header, 10, "/f")
    # the API answers Content-Range: bytes */10, as RFC 9110 asks of a 416
    assert caught.value.size == 10
    # the message quotes the header, cut short
    assert len(caught.value.description) < 300


@pytest.mark.parametrize(
    "header", ["bytes=-0", "bytes=-000", "bytes=1-4junk", "bytes=4-1", "bytes=", "bytes=-"]
)
def test_ranges_that_select_nothing_are_unsatisfiable(header):
    # webob alone reads "-0" as the whole file and "1-4junk" as 1-4: the adapter refuses both
    with pytest.raises(files.RangeNotSatisfiable):
        parse_range(header, 10, "/f")


ETAG = '"10-1700000000000000000-3"'
LAST_MODIFIED = 1_700_000_000


def version_response() -> Response:
    response = Response(headers={"ETag": ETAG})
    response.last_modified = LAST_MODIFIED
    return response


@pytest.mark.parametrize(
    ("if_range", "holds"),
    [
        (None, True),
        (ETAG, True),
        ('"another-version"', False),
        # a weak validator never matches If-Range (RFC 9110 13.1.5)
        ("W/" + ETAG, False),
        # a date, even the file's own Last-Modified: whole seconds cannot tell two writes apart
        ("Tue, 14 Nov 2023 22:13:20 GMT", False),
        ("Tue, 14 Nov 20231 22:13:20 GMT", False),  # webob's date parsing raises on this: not a 500
    ],
)
def test_if_range_names_one_version(if_range, holds):
    request = Request.blank("/", headers={"If-Range": if_range} if if_range else {})
    assert _if_range_holds(request, version_response()) is holds


@pytest.mark.parametrize(
    ("if_none_match", "matches"),
    [
        (ETAG, True),
        ("W/" + ETAG, True),
        (f'"other", {ETAG}', True),
        ("*", True),
        ('"other"', False),
        (None, False),
    ],
)
def test_if_none_match_compares_weakly(if_none_match, matches):
    request = Request.blank("/", headers={"If-None-Match": if_none_match} if if_none_match else {})
    assert (ETAG.strip('"') in request.if_none_match) is matches
