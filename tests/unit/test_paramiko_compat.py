"""The paramiko fence: the minor version its internals were checked against; nothing private outside it."""

import pathlib
import re

import paramiko
import pytest

import hcc_federation
from hcc_federation.remote import paramiko_compat
from hcc_federation.remote.paramiko_compat import UnsupportedParamiko, check_paramiko_version

PACKAGE = pathlib.Path(hcc_federation.__file__).parent


def test_the_installed_paramiko_is_the_checked_minor_version():
    check_paramiko_version()
    assert tuple(int(p) for p in paramiko.__version__.split(".")[:2]) == paramiko_compat.TESTED_MINOR


@pytest.mark.parametrize("version", ["5.2.0", "5.0.9", "6.1.0", "4.0.0", "not-a-version"])
def test_another_minor_version_is_refused_with_a_message_that_says_what_to_do(version):
    with pytest.raises(
        UnsupportedParamiko, match=rf"paramiko {re.escape(version)} is installed.*paramiko>=5\.1,<5\.2"
    ):
        check_paramiko_version(version)


@pytest.mark.parametrize("version", ["5.1.0", "5.1.7", "5.1.0rc1"])
def test_any_patch_release_of_the_checked_minor_is_accepted(version):
    check_paramiko_version(version)


def test_setup_py_pins_the_checked_minor_version():
    setup = (PACKAGE.parent / "setup.py").read_text()
    major, minor = paramiko_compat.TESTED_MINOR
    assert f'"paramiko>={major}.{minor},<{major}.{minor + 1}"' in setup


def test_no_module_but_the_fence_touches_a_private_paramiko_name():
    # a private attribute of a paramiko object: ._request, ._wait_for_event, ._closed, ._reqs ...
    private = re.compile(
        r"\b(?:sftp|handle|channel|transport|chan)\w*\.(?:_request|_read_response|_wait_for_event|_closed"
        r"|_reqs|_send_message|channels_seen)\b"
    )
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "paramiko_compat.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == []


def test_name_entries_read_what_paramiko_reads():
    from paramiko.message import Message

    from hcc_federation.remote.paramiko_compat import _name_entries

    entries = []
    for i, name in enumerate(["plain", "ü €", "with\nnewline", "."]):
        attr = paramiko.SFTPAttributes()
        attr.st_size, attr.st_uid, attr.st_gid = 2**40 + i, 1000 + i, 2000 + i
        attr.st_mode, attr.st_atime, attr.st_mtime = 0o100644, 1_700_000_000, 1_800_000_000 + i
        if i == 1:
            attr.attr = {"ext@example.org": b"value"}
        if i == 2:
            attr.st_size = None  # flags without SIZE
        entries.append((name, attr))
    msg = Message()
    for name, attr in entries:
        msg.add_string(name.encode())
        msg.add_string(f"-rw-r--r-- 1 a b 0 Jan 1 00:00 {name}".encode())
        attr._pack(msg)
    data = msg.asbytes()
    ours = list(_name_entries(data, len(entries)))
    reader = Message(data)
    fields = ("filename", "st_size", "st_uid", "st_gid", "st_mode", "st_atime", "st_mtime")
    for got in ours:
        theirs = paramiko.SFTPAttributes._from_msg(reader, reader.get_text(), reader.get_text())
        assert [getattr(got, f) for f in fields] == [getattr(theirs, f) for f in fields]
    assert [a.filename for a in ours] == [n for n, _ in entries]
    # a name that is not UTF-8 is an error, as with paramiko's get_text
    bad = Message()
    bad.add_string(b"\xff\xfe")
    bad.add_string(b"")
    bad.add_int(0)
    with pytest.raises(UnicodeDecodeError):
        list(_name_entries(bad.asbytes(), 1))


@pytest.mark.parametrize("length", [0, 1, 261_120])
def test_a_write_header_is_what_paramiko_sends_before_the_data(length):
    # paramiko's SFTPClient._async_request + BaseSFTP._send_packet for the same WRITE, data included
    import struct

    from paramiko.message import Message
    from paramiko.sftp import CMD_WRITE, int64

    handle, offset, data = b"\x00\x01handle", 5 * 2**32 + 7, b"d" * length
    msg = Message()
    msg.add_int(42)
    msg.add_string(handle)
    msg.add_int64(int64(offset))
    msg.add_string(data)
    payload = msg.asbytes()
    expected = struct.pack(">I", len(payload) + 1) + bytes([CMD_WRITE]) + payload
    assert paramiko_compat.write_header(42, handle, offset, length) + data == expected
