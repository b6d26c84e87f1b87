"""Pure helpers of hcc_federation.files: sniffing, MIME, etags, paging, getent and cp/rm stderr."""

import random
import stat

import pytest

from hcc_federation import files
from hcc_federation.api.error_map import mapping_for
from hcc_federation.remote.result import CommandResult
from hcc_federation.timefmt import rfc3339


def test_text_sniffing():
    assert files.looks_like_text(b"")
    assert files.looks_like_text("héllo wörld\n".encode())
    assert files.looks_like_text("☃".encode()[:2])  # a character cut by the sample's end
    assert not files.looks_like_text(b"ELF\x00\x01")
    assert not files.looks_like_text(b"\xff\xfe\xfa latin garbage")


def test_mime_guess_by_name_then_content():
    assert files.guess_mime("job.py") == "text/x-python"
    assert files.guess_mime("slurm-42.out") == "text/plain"
    assert files.guess_mime("photo.PNG") == "image/png"
    assert files.guess_mime("README", text=True) == "text/plain"
    assert files.guess_mime("README", text=False) == "application/octet-stream"
    assert files.guess_mime("README") == "application/octet-stream"


# recorded on the test bed: env LC_ALL=C stat -L --printf='%i %s %.9Y %.9Z %f\n' -- FILE (coreutils 9.1)
RECORDED_STAT = "2146641 3 1796192776.911288816 1796192776.911288816 81a4\n"


def test_version_parses_recorded_stat_output():
    version = files.parse_version(RECORDED_STAT)
    assert version == files.FileVersion(2146641, 3, 1796192776_911288816, 1796192776_911288816, 0o100644)
    assert stat.S_ISREG(version.mode)
    assert files.version_argv("/home/a b/-x") == [
        "env",
        "LC_ALL=C",
        "stat",
        "-L",
        "--printf=%i %s %.9Y %.9Z %f\\n",
        "--",
        "/home/a b/-x",
    ]
    # times before 1970 are negative; fewer than 9 digits of fraction are tenths, hundredths...
    assert files.parse_version("1 0 -1.500000000 1.5 81a4").mtime_ns == -1_500_000_000
    assert files.parse_version("1 0 0.5 1.5 81a4").ctime_ns == 1_500_000_000
    with pytest.raises(ValueError):
        files.parse_version("stat: cannot statx")


def test_etag_is_strong_and_changes_with_any_part_of_the_version():
    base = files.parse_version(RECORDED_STAT)
    etag = base.etag
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert files.FileVersion(base.inode, base.size, base.mtime_ns, base.ctime_ns, 0o100600).etag == etag
    changed = [
        files.FileVersion(base.inode + 1, base.size, base.mtime_ns, base.ctime_ns, base.mode),
        files.FileVersion(base.inode, base.size + 1, base.mtime_ns, base.ctime_ns, base.mode),
        files.FileVersion(base.inode, base.size, base.mtime_ns + 1, base.ctime_ns, base.mode),
        files.FileVersion(base.inode, base.size, base.mtime_ns, base.ctime_ns + 1, base.mode),
    ]
    assert len({v.etag for v in changed} | {etag}) == 5


def test_file_types_and_times():
    assert files.file_type(stat.S_IFDIR | 0o755) == "directory"
    assert files.file_type(stat.S_IFREG | 0o600) == "file"
    assert files.file_type(stat.S_IFLNK | 0o777) == "symlink"
    assert files.file_type(stat.S_IFIFO | 0o600) == "other"
    assert files.file_type(None) == "other"
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1_000_000_000) == "2001-09-09T01:46:40Z"


def _rows(names_and_dirs):
    return [(0 if is_dir else 1, name, 0, 0, 0, 0, 0) for name, is_dir in names_and_dirs]


def test_paging_matches_a_full_sort():
    rng = random.Random(7)
    entries = [(f"n{rng.randrange(10**9):09d}-{i}", rng.random() < 0.2) for i in range(2_000)]
    expected = sorted(_rows(entries))
    for offset, limit in [(0, 10), (0, 0), (5, 100), (1_990, 50), (3_000, 10), (0, 2_000)]:
        page, total = files.page_rows(iter(_rows(entries)), offset, limit)
        assert total == 2_000
        assert page == expected[offset : offset + limit]


def test_directories_come_first_then_code_point_order():
    page, total = files.page_rows(
        _rows([("b", False), ("Z", True), ("a", False), ("B", False), ("a", True)]), 0, 10
    )
    assert [(r[0], r[1]) for r in page] == [(0, "Z"), (0, "a"), (1, "B"), (1, "a"), (1, "b")]
    assert total == 5


def test_parse_getent():
    output = (
        "alice:x:10001:10000:Alice Anderson:/home/alice:/bin/bash\nhpcusers:*:10000:alice,bob\nbroken line\n"
    )
    assert files.parse_getent(output) == {10001: "alice", 10000: "hpcusers"}


def _failed(stderr: str, argv=("env", "LC_ALL=C", "cp", "--", "a", "b")) -> CommandResult:
    return CommandResult(tuple(argv), 1, b"", stderr.encode())


# stderr captured from GNU coreutils 9.1 on the test bed (LC_ALL=C), except the two storage lines,
# which are the messages cp prints for ENOSPC and EDQUOT.
@pytest.mark.parametrize(
    ("stderr", "error"),
    [
        ("cp: cannot stat '/tmp/capt/nope': No such file or directory", files.NoSuchPath),
        (
            "cp: cannot copy a directory, '/tmp/capt/d', into itself, '/tmp/capt/d/sub/inner'",
            files.InvalidMove,
        ),
        ("cp: cannot stat '/root/x': Permission denied", files.PermissionDenied),
        ("rm: cannot remove '/root/.bashrc': Permission denied", files.PermissionDenied),
        ("cp: cannot stat '/tmp/capt/file/x': Not a directory", files.NotADirectory),
        ("cp: cannot create directory '/home/bob/x': Permission denied", files.PermissionDenied),
        ("cp: error writing '/s/f': No space left on device", files.InsufficientStorage),
        (
            "cp: cannot stat '/x/y': Permission denied\ncp: failed to close '/s/f': Disk quota exceeded",
            files.InsufficientStorage,
        ),
        ("rm: cannot remove '/x': Operation not permitted", files.PermissionDenied),
        ("cp: something new and strange", files.RemoteFileError),
    ],
)
def test_command_errors_are_typed(stderr, error):
    mapped = files.map_command_error(_failed(stderr), "/the/path")
    assert type(mapped) is error
    assert mapped.path == "/the/path"
    assert "/the/path" in mapped.description


def test_an_unknown_failure_names_the_command_and_keeps_its_words():
    mapped = files.map_command_error(_failed("cp: something new and strange"), "/p")
    assert mapping_for(mapped).status == 500
    assert mapped.description.startswith("cp failed on /p")
    assert "something new and strange" in mapped.description
    silent = files.map_command_error(_failed(""), "/p")
    assert "exit status 1" in silent.description


def test_argv_keeps_hostile_names_as_single_arguments():
    name = "/home/alice/-rf $(touch /tmp/pwned)"
    assert files.copy_argv(name, "/x")[-3:] == ["--", name, "/x"]
    assert files.remove_tree_argv(name)[-2:] == ["--", name]


def test_statuses():
    expected = {
        files.NoSuchPath: 404,
        files.PermissionDenied: 403,
        files.AlreadyExists: 409,
        files.NotADirectory: 409,
        files.IsADirectory: 409,
        files.DirectoryNotEmpty: 409,
        files.PreconditionFailed: 412,
        files.PayloadTooLarge: 413,
        files.RangeNotSatisfiable: 416,
        files.InsufficientStorage: 507,
        files.RemoteFileError: 500,
    }
    for error, status in expected.items():
        assert mapping_for(error("x", path="/p")).status == status


def test_the_sweep_of_stale_temp_files_touches_only_the_users_own_regular_files():
    argv = files.sweep_stale_temp_argv("/home/a b/-x/", 10001)
    assert argv[:2] == ["find", "/home/a b/-x/."]  # entered even through a symlink; never an option
    assert argv[2:] == [
        "-maxdepth",
        "1",
        "-name",
        ".hcc-upload-*",
        "-type",
        "f",
        "-uid",
        "10001",
        "-mmin",
        f"+{files.STALE_TEMP_MINUTES}",
        "-delete",
    ]
    # swept at most once per interval, so what is a day old at a write was old enough at the last sweep
    assert (files.STALE_TEMP_MINUTES + 1) * 60 + files.SWEEP_INTERVAL <= 86400
    assert files.sweep_stale_temp_argv("/", 0)[1] == "/."


def test_the_id_name_cache_expires_and_is_bounded():
    from hcc_federation.files.metadata import IdNames

    names = IdNames(now=1000.0)
    assert not names.stale(1000.0 + IdNames.TTL)
    assert names.stale(1000.0 + IdNames.TTL + 1)
    names.users.update((i, str(i)) for i in range(IdNames.MAX + 1))
    assert names.stale(1000.0)


def test_every_time_has_one_format_whatever_its_source():
    # a Slurm/SFTP epoch, the database's naive UTC with microseconds, and an aware time elsewhere
    from datetime import UTC, datetime, timedelta, timezone

    naive = datetime(2026, 11, 30, 1, 31, 32, 654321)
    aware = datetime(2026, 11, 30, 2, 31, 32, tzinfo=timezone(timedelta(hours=1)))
    assert rfc3339(naive) == rfc3339(aware) == rfc3339(naive.replace(tzinfo=UTC).timestamp())
    assert rfc3339(naive) == "2026-11-30T01:31:32Z"
    assert rfc3339(None) is None
