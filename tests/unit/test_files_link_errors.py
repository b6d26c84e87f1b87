"""Failures of the SSH link under SFTP work are 503/504, never the file system's 500 or 507."""

import errno

import paramiko
import pytest

from hcc_federation import files
from hcc_federation.api.error_map import mapping_for


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        # socket.timeout, what paramiko raises when a channel's timeout passes, is TimeoutError
        (TimeoutError(), 504),
        (EOFError(), 503),
        (paramiko.SSHException("Server connection dropped"), 503),
        (ConnectionResetError(errno.ECONNRESET, "reset"), 503),
        (BrokenPipeError(errno.EPIPE, "broken pipe"), 503),
    ],
)
def test_link_failures_are_503_or_504_naming_the_cluster(exc, status):
    error = files.link_failure(exc, "/home/a/f", "write")
    assert mapping_for(error).status == status and error.field == "cluster"
    if isinstance(exc, OSError):
        assert mapping_for(files.map_sftp_error(exc, "/home/a/f", "write")).status == status


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (OSError("Failure"), files.RemoteFileError),
        (FileNotFoundError(errno.ENOENT, "No such file"), files.NoSuchPath),
        (PermissionError(errno.EACCES, "Permission denied"), files.PermissionDenied),
    ],
)
def test_the_file_systems_own_answers_are_not_link_failures(exc, expected):
    assert files.link_failure(exc, "/p", "write") is None
    assert type(files.map_sftp_error(exc, "/p", "write")) is expected
