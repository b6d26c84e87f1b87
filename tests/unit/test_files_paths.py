"""Path rules and named file systems of hcc_federation.files: pure, no cluster."""

import pytest

from hcc_federation.errors import InvalidArgument
from hcc_federation.files import MAX_LIST_LIMIT, check_paging, resolve_filesystems, validate_path


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("/", "/"),
        ("//", "/"),
        ("///home//alice/", "/home/alice"),
        ("/home/alice/./x/../y", "/home/alice/y"),
        ("/..", "/"),
        ("/home/alice/$(touch /tmp/pwned)", "/home/alice/$(touch /tmp/pwned)"),
        ("/home/alice/-rf", "/home/alice/-rf"),
        ("/home/alice/new\nline; `x` 'q' \"d\"", "/home/alice/new\nline; `x` 'q' \"d\""),
        ("/home/ünïcødé ☃", "/home/ünïcødé ☃"),
        ("/" + "x" * 255, "/" + "x" * 255),
        ("/" + "é" * 127, "/" + "é" * 127),
    ],
)
def test_valid_paths_are_normalized(raw, normalized):
    assert validate_path(raw) == normalized


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "home/alice",
        "./x",
        "~/x",
        "/home/al\x00ice",
        "/" + "x" * 256,
        "/" + "é" * 128,  # 256 bytes of UTF-8 in 128 characters
        "/a/" + "x" * 256 + "/b",
        "/" + "/".join(["abcdefg"] * 600),  # 4801 bytes
        "/bad-\udcff-surrogate",
        None,
        b"/bytes",
    ],
)
def test_invalid_paths_are_bad_requests(bad):
    with pytest.raises(InvalidArgument) as info:
        validate_path(bad)
    assert info.value.field == "path"


def test_path_length_limit_is_in_bytes():
    at_limit = "/" + "/".join(["a" * 255] * 16)  # 16 * 256 = 4096 bytes
    assert len(at_limit.encode()) == 4096
    assert validate_path(at_limit) == at_limit
    with pytest.raises(InvalidArgument):
        validate_path(at_limit + "b")


def test_the_parameter_name_is_reported():
    with pytest.raises(InvalidArgument) as info:
        validate_path("relative", name="to")
    assert info.value.field == "to"


def test_paging_bounds():
    assert check_paging(0, 0) == (0, 0)
    assert check_paging(10, MAX_LIST_LIMIT) == (10, MAX_LIST_LIMIT)
    for offset, limit, name in [
        (-1, 10, "offset"),
        (0, -1, "limit"),
        (0, MAX_LIST_LIMIT + 1, "limit"),
        ("1", 1, "offset"),
        (0, True, "limit"),
    ]:
        with pytest.raises(InvalidArgument) as info:
            check_paging(offset, limit)
        assert info.value.field == name


def test_filesystems_substitute_user_home_and_group():
    templates = {"HOME": "$HOME", "WORK": "/work/$GROUP/$USER", "SCRATCH": "/scratch/${USER}_tmp/"}
    assert resolve_filesystems(templates, user="alice", home="/home/alice", group="hpcusers") == [
        {"name": "HOME", "path": "/home/alice"},
        {"name": "WORK", "path": "/work/hpcusers/alice"},
        {"name": "SCRATCH", "path": "/scratch/alice_tmp"},
    ]


def test_filesystems_reject_unknown_variables_and_relative_results():
    with pytest.raises(ValueError, match=r"\$PROJECT"):
        resolve_filesystems({"P": "/p/$PROJECT"}, user="a", home="/h", group="g")
    with pytest.raises(ValueError, match="REL"):
        resolve_filesystems({"REL": "$USER/x"}, user="a", home="/h", group="g")
