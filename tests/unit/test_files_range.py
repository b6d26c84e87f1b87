"""Range headers of downloads (hcc_federation.files.download.parse_range), without a server."""

import pytest

from hcc_federation import files
from hcc_federation.files.download import parse_range

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
