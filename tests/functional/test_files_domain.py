"""hcc_federation.files against the real sshds of alpha and beta, as alice (and bob), over SFTP."""

import contextlib
import glob
import hashlib
import json
import os
import posixpath
import shlex
import socket
import stat
import subprocess
import time
import tracemalloc
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import paramiko
import pytest

from hcc_federation import files
from hcc_federation.api.error_map import mapping_for
from hcc_federation.errors import DomainError, InvalidArgument
from hcc_federation.remote import RemoteTimeout
from hcc_federation.remote.paramiko_compat import read_directory_rows
from hcc_federation.remote.result import CommandResult
from tests.helpers import HOSTILE_NAMES, wait_for


@dataclass
class Session:
    cluster: str
    user: str
    client: paramiko.SSHClient
    sftp: paramiko.SFTPClient

    def run(self, argv: Sequence[str]) -> CommandResult:
        """The runner contract of hcc_federation.files: an argv, run as the user, with a timeout."""
        _, stdout, stderr = self.client.exec_command(shlex.join(argv), timeout=60)
        out, err = stdout.read(), stderr.read()
        return CommandResult(tuple(argv), stdout.channel.recv_exit_status(), out, err)


def _connect(cluster: dict, user: dict, name: str) -> Session:
    # TCP_NODELAY as the pool sets it: without it each read window stalls on a delayed ACK (40 ms)
    sock = socket.create_connection((cluster["ssh_host"], cluster["ssh_port"]), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    client.load_host_keys(cluster["known_hosts"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        cluster["ssh_host"],
        cluster["ssh_port"],
        username=user["name"],
        password=user["password"],
        sock=sock,
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
        auth_timeout=10,
    )
    return Session(name, user["name"], client, client.open_sftp())


@pytest.fixture(scope="module", params=["alpha", "beta"])
def alice(request, clusters, users) -> Iterator[Session]:
    session = _connect(clusters[request.param], users["alice"], request.param)
    yield session
    session.client.close()


@pytest.fixture(scope="module")
def bob(alice, clusters, users) -> Iterator[Session]:
    session = _connect(clusters[alice.cluster], users["bob"], alice.cluster)
    yield session
    session.client.close()


@pytest.fixture
def scratch(alice) -> Iterator[str]:
    path = f"/home/alice/hcc-files-test-{uuid.uuid4().hex}"
    alice.sftp.mkdir(path)
    yield path
    # chmod first: a test may leave a 0700/0500 directory behind
    alice.run(["chmod", "-R", "u+rwx", "--", path])
    assert alice.run(["rm", "-r", "-f", "--", path]).ok


@pytest.fixture(autouse=True)
def no_pwned():
    assert not os.path.exists("/tmp/pwned")
    yield
    assert not os.path.exists("/tmp/pwned"), "a hostile name was executed by a shell"


def test_a_name_that_is_not_utf8_is_a_clear_error_not_a_crash(alice, scratch, users):
    # made as root on the (shared) login host: no UTF-8 API of ours can create such a name
    os.mkdir(scratch + "/legacy")
    bad = (scratch + "/legacy/").encode() + b"caf\xe9.txt"
    open(bad, "wb").close()
    os.symlink(b"/tmp/caf\xe9", (scratch + "/legacy/").encode() + b"link")
    for p in (scratch + "/legacy", bad):
        os.chown(p, users["alice"]["uid"], -1, follow_symlinks=False)
    with pytest.raises(files.NameNotUtf8) as caught:
        files.list_directory(alice.sftp, scratch + "/legacy")
    # find's listing is refused, and SFTP's reading gives the same error
    with pytest.raises(files.NameNotUtf8):
        files.read_page(alice.sftp, scratch + "/legacy", limit=None, run=alice.run)
    assert mapping_for(caught.value).status == 502 and "legacy" in caught.value.description
    # the link alone is fine: its target cannot be shown, the rest of its metadata can
    assert files.get_metadata(alice.sftp, scratch + "/legacy/link")["type"] == "symlink"


def names_in(session: Session, path: str) -> set[str]:
    return set(session.sftp.listdir(path))


def read_all(session: Session, path: str, **kwargs) -> bytes:
    return b"".join(files.read_chunks(session.sftp, path, **kwargs))


# ------------------------------------------------------------------------------------- metadata


def test_mkdir_touch_and_metadata(alice, scratch):
    created, meta = files.make_directory(alice.sftp, f"{scratch}/a/b/c", parents=True, run=alice.run)
    assert created
    assert (meta["type"], meta["name"], meta["path"]) == ("directory", "c", f"{scratch}/a/b/c")
    assert (meta["owner"], meta["group"]) == ("alice", "hpcusers")
    assert meta["mode"] == "0755"  # the sftp session's umask 022
    created, _ = files.make_directory(alice.sftp, f"{scratch}/a/b/c", parents=True)
    assert not created
    with pytest.raises(files.AlreadyExists):
        files.make_directory(alice.sftp, f"{scratch}/a/b/c")
    with pytest.raises(files.NoSuchPath):
        files.make_directory(alice.sftp, f"{scratch}/missing/x")

    created, meta = files.touch(alice.sftp, f"{scratch}/a/empty.txt")
    assert created
    assert (meta["type"], meta["size"], meta["mode"]) == ("file", 0, "0644")
    assert meta["mime"] == "text/plain"
    alice.sftp.utime(f"{scratch}/a/empty.txt", (1_000_000_000, 1_000_000_000))
    assert files.get_metadata(alice.sftp, f"{scratch}/a/empty.txt")["mtime"] == "2001-09-09T01:46:40Z"
    created, meta = files.touch(alice.sftp, f"{scratch}/a/empty.txt")
    assert not created
    assert meta["mtime"] > "2020"

    files.write_file(alice.sftp, f"{scratch}/a/blob.bin", [b"\x00\x01\x02binary"])
    blob = files.get_metadata(alice.sftp, f"{scratch}/a/blob.bin")
    assert (blob["text"], blob["mime"], blob["size"]) == (False, "application/octet-stream", 9)
    files.write_file(alice.sftp, f"{scratch}/a/notes", ["héllo\n".encode()])
    assert files.get_metadata(alice.sftp, f"{scratch}/a/notes")["text"] is True

    alice.sftp.symlink("notes", f"{scratch}/a/link")
    link = files.get_metadata(alice.sftp, f"{scratch}/a/link")
    assert (link["type"], link["target"]) == ("symlink", "notes")

    with pytest.raises(files.NotADirectory):
        files.make_directory(alice.sftp, f"{scratch}/a/notes/sub", parents=True)
    with pytest.raises(files.NoSuchPath):
        files.get_metadata(alice.sftp, f"{scratch}/nothing")


def test_listing_sorts_directories_first_and_pages(alice, scratch):
    for name in ["b.txt", "A.txt", "c"]:
        files.touch(alice.sftp, f"{scratch}/{name}")
    for name in ["zdir", "adir"]:
        files.make_directory(alice.sftp, f"{scratch}/{name}")
    alice.sftp.symlink("zdir", f"{scratch}/link")
    listing = files.list_directory(alice.sftp, scratch, run=alice.run)
    assert listing["type"] == "directory" and listing["total"] == 6
    assert [e["name"] for e in listing["entries"]] == ["adir", "zdir", "A.txt", "b.txt", "c", "link"]
    link = listing["entries"][-1]
    assert (link["type"], link["target"]) == ("symlink", "zdir")
    txt = listing["entries"][2]
    assert (txt["mime"], txt["text"], txt["owner"], txt["group"]) == ("text/plain", None, "alice", "hpcusers")
    # an etag costs a stat on the cluster: a file's own metadata has it, a listing's entries do not
    assert "etag" not in txt
    assert files.get_metadata(alice.sftp, f"{scratch}/A.txt", run=alice.run)["etag"] == files.file_etag(
        alice.run, f"{scratch}/A.txt"
    )
    page = files.list_directory(alice.sftp, scratch, offset=2, limit=2)
    assert [e["name"] for e in page["entries"]] == ["A.txt", "b.txt"]
    assert (page["offset"], page["limit"], page["total"]) == (2, 2, 6)
    assert files.list_directory(alice.sftp, scratch, offset=10, limit=5)["entries"] == []
    # a symlink to a directory lists the directory
    assert files.list_directory(alice.sftp, f"{scratch}/link")["total"] == 0
    with pytest.raises(files.NotADirectory):
        files.list_directory(alice.sftp, f"{scratch}/c")
    with pytest.raises(InvalidArgument) as info:
        files.list_directory(alice.sftp, scratch, limit=files.MAX_LIST_LIMIT + 1)
    assert info.value.field == "limit"


def test_big_directory_lists_a_page_quickly(alice, scratch):
    count = 10_000
    # one remote python3 creates the entries: argv, not a shell, and far faster than SFTP opens
    script = (
        "import os, sys\n"
        "d = sys.argv[1]\n"
        "for i in range(int(sys.argv[2])):\n"
        "    open(os.path.join(d, 'f%05d' % i), 'w').close()\n"
        "for i in range(3):\n"
        "    os.mkdir(os.path.join(d, 'zz-dir%d' % i))\n"
    )
    assert alice.run(["python3", "-c", script, scratch, str(count)]).ok

    started = time.perf_counter()
    first = files.list_directory(alice.sftp, scratch, offset=0, limit=100, run=alice.run)
    first_seconds = time.perf_counter() - started
    started = time.perf_counter()
    deep = files.list_directory(alice.sftp, scratch, offset=9_950, limit=100)
    deep_seconds = time.perf_counter() - started
    tracemalloc.start()
    files.list_directory(alice.sftp, scratch, offset=0, limit=100)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"\n{alice.cluster}: listing {count + 3} entries: first page {first_seconds * 1000:.0f} ms, "
        f"page at 9950 {deep_seconds * 1000:.0f} ms, peak Python memory {peak / 2**20:.2f} MiB"
    )
    assert first["total"] == deep["total"] == count + 3
    assert [e["name"] for e in first["entries"][:4]] == ["zz-dir0", "zz-dir1", "zz-dir2", "f00000"]
    assert first["entries"][-1]["name"] == "f00096"
    assert [e["name"] for e in deep["entries"]] == [f"f{i:05d}" for i in range(9_947, count)]
    assert first_seconds < 3 and deep_seconds < 3
    # bounded memory: the page and paramiko's buffers, not 10,000 SFTPAttributes (several MiB)
    assert peak < 4 * 2**20


# ----------------------------------------------------------------------------------- read/write


def test_write_then_read_ranges(alice, scratch):
    path = f"{scratch}/data.bin"
    data = os.urandom(9 * 2**20 + 12_345)  # more than two read windows, not a multiple of anything
    created, meta = files.write_file(
        alice.sftp, path, (data[i : i + 100_000] for i in range(0, len(data), 100_000)), run=alice.run
    )
    assert created and meta["size"] == len(data) and meta["type"] == "file"
    assert hashlib.sha256(read_all(alice, path)).digest() == hashlib.sha256(data).digest()
    assert read_all(alice, path, offset=5_000_000, length=4_500_000) == data[5_000_000:9_500_000]
    assert read_all(alice, path, offset=len(data) - 10, length=1000) == data[-10:]
    assert read_all(alice, path, offset=len(data)) == b""
    assert read_all(alice, path, offset=3, length=0) == b""
    chunks = list(files.read_chunks(alice.sftp, path, offset=1, length=300_000, chunk=65_536))
    assert [len(c) for c in chunks] == [65_536] * 4 + [300_000 - 4 * 65_536]
    with pytest.raises(files.RangeNotSatisfiable):
        files.read_chunks(alice.sftp, path, offset=len(data) + 1)
    with pytest.raises(files.NoSuchPath):
        files.read_chunks(alice.sftp, f"{scratch}/nothing")
    with pytest.raises(files.IsADirectory):
        files.read_chunks(alice.sftp, scratch)
    # a download abandoned part way leaves the connection usable
    stream = files.read_chunks(alice.sftp, path)
    next(stream)
    stream.close()
    assert read_all(alice, path, offset=7, length=5) == data[7:12]


def test_uploads_send_writes_as_large_as_the_server_takes(alice, scratch, monkeypatch):
    # OpenSSH's sftp-server states 261,120 bytes (limits@openssh.com); paramiko's 32 KiB WRITEs made a
    # 256 MiB upload 8,192 requests, each split by the channel's 32 KiB packets into a full one and a
    # sliver. A chunk goes out in WRITEs of that size, its tail in one more (never held back), at
    # the offsets that follow each other.
    from hcc_federation.remote import paramiko_compat
    from hcc_federation.remote.paramiko_compat import write_request_size

    size = write_request_size(alice.sftp)
    assert size == 261_120
    writes = []
    original = paramiko_compat.write_header

    def recording(request, handle, offset, length):
        writes.append((offset, length))
        return original(request, handle, offset, length)

    monkeypatch.setattr(paramiko_compat, "write_header", recording)
    data = os.urandom(2 * (2 * size + 100) + size)
    path = f"{scratch}/large-writes.bin"
    chunks = [data[: 2 * size + 100], data[2 * size + 100 : 4 * size + 200], data[4 * size + 200 :]]
    _, meta = files.write_file(alice.sftp, path, chunks, run=alice.run)
    assert [length for _, length in writes] == [size, size, 100, size, size, 100, size]
    assert [offset for offset, _ in writes] == [
        0,
        size,
        2 * size,
        *(2 * size + 100 + o for o in (0, size, 2 * size)),
        4 * size + 200,
    ]
    assert meta["size"] == len(data) and read_all(alice, path) == data


def test_a_large_upload_arrives_intact_through_writes_sent_into_the_channel(alice, scratch):
    # send_writes puts WRITEs into the channel itself (memoryview slices, the header joined to the
    # first packet, answers read as they come): 24 MiB is twelve times sshd's 2 MiB window, so the
    # writer waits for it, and six times WRITES_IN_FLIGHT_BYTES (the most of WRITEs that may await
    # their answers at once). Chunks of every shape: bytes, bytearray, memoryview, a byte, a WRITE's
    # size and one byte either side.
    from hcc_federation.remote.paramiko_compat import WRITES_IN_FLIGHT_BYTES, write_request_size

    size = write_request_size(alice.sftp)
    data = os.urandom(24 * 1024 * 1024 + 5)
    cuts = [0, 1, size, 2 * size - 1, 3 * size + 1, 3 * size + 2, 4 * 1024 * 1024 + 7, len(data)]
    pieces = [data[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    kinds = [bytes, bytearray, memoryview]
    chunks = [kinds[i % 3](piece) for i, piece in enumerate(pieces)]
    assert len(data) > 4 * WRITES_IN_FLIGHT_BYTES
    path = f"{scratch}/large.bin"
    _, meta = files.write_file(alice.sftp, path, chunks, run=alice.run)
    assert meta["size"] == len(data)
    out = alice.run(["sha256sum", "--", path]).stdout.split()[0].decode()
    assert out == hashlib.sha256(data).hexdigest()
    # every answer was read: the session is fit for the pool to keep
    assert not alice.sftp._expecting

    # a failure after many WRITEs in flight leaves no file, and no answer awaited either
    class ClientWentAway(Exception):
        pass

    def cut_off() -> Iterator[bytes]:
        yield data[: 8 * 1024 * 1024]
        raise ClientWentAway

    with pytest.raises(ClientWentAway):
        files.write_file(alice.sftp, f"{scratch}/cut.bin", cut_off())
    assert not alice.sftp._expecting
    assert names_in(alice, scratch) == {"large.bin"}


def test_replace_keeps_mode_and_if_match(alice, scratch):
    path = f"{scratch}/conf.txt"
    created, _ = files.write_file(alice.sftp, path, [b"one\n"])
    assert created
    alice.sftp.chmod(path, 0o640)
    etag = files.file_etag(alice.run, path)
    created, meta = files.write_file(alice.sftp, path, [b"two, longer\n"], if_match=etag, run=alice.run)
    assert not created and meta["mode"] == "0640" and meta["etag"] != etag
    assert read_all(alice, path) == b"two, longer\n"
    with pytest.raises(files.PreconditionFailed) as info:
        files.write_file(alice.sftp, path, [b"three\n"], if_match=etag, run=alice.run)
    assert mapping_for(info.value).status == 412
    assert read_all(alice, path) == b"two, longer\n"
    # a stale etag whose size differs is refused before the body is read (nothing sent for nothing)
    sent: list[bytes] = []

    def body() -> Iterator[bytes]:
        sent.append(b"three\n")
        yield b"three\n"

    with pytest.raises(files.PreconditionFailed):
        files.write_file(alice.sftp, path, body(), if_match=etag, run=alice.run)
    assert sent == []
    # the current etag, and one of a list, match
    current = files.file_etag(alice.run, path)
    files.write_file(alice.sftp, path, [b"2.5\n"], if_match=f'"x", {current}', run=alice.run)
    # If-Match uses the strong comparison: a weak tag never matches
    with pytest.raises(files.PreconditionFailed):
        weak = "W/" + files.file_etag(alice.run, path)
        files.write_file(alice.sftp, path, [b"2.6\n"], if_match=weak, run=alice.run)
    assert read_all(alice, path) == b"2.5\n"
    files.write_file(alice.sftp, path, [b"four\n"], if_match="*")
    with pytest.raises(files.PreconditionFailed):
        files.write_file(alice.sftp, f"{scratch}/new.txt", [b"x"], if_match="*")
    with pytest.raises(files.AlreadyExists):
        files.write_file(alice.sftp, path, [b"five\n"], overwrite=False)
    created, _ = files.write_file(alice.sftp, f"{scratch}/upload.txt", [b"up"], overwrite=False)
    assert created
    with pytest.raises(files.IsADirectory):
        files.write_file(alice.sftp, scratch, [b"x"])
    with pytest.raises(files.NoSuchPath):
        files.write_file(alice.sftp, f"{scratch}/no/such/dir.txt", [b"x"])
    # written through a symlink: the link stays, its target gets the data
    alice.sftp.symlink("conf.txt", f"{scratch}/alias")
    files.write_file(alice.sftp, f"{scratch}/alias", [b"via link\n"])
    assert alice.sftp.readlink(f"{scratch}/alias") == "conf.txt"
    assert read_all(alice, path) == b"via link\n"
    assert names_in(alice, scratch) == {"conf.txt", "upload.txt", "alias"}


def test_failed_uploads_leave_nothing(alice, scratch):
    class ClientWentAway(Exception):
        pass

    def dies_mid_way():
        yield b"a" * 1_000_000
        yield b"b" * 1_000_000
        raise ClientWentAway

    with pytest.raises(ClientWentAway):
        files.write_file(alice.sftp, f"{scratch}/partial.bin", dies_mid_way())
    assert names_in(alice, scratch) == set()
    files.write_file(alice.sftp, f"{scratch}/kept.txt", [b"original"])
    with pytest.raises(ClientWentAway):
        files.write_file(alice.sftp, f"{scratch}/kept.txt", dies_mid_way())
    with pytest.raises(files.PayloadTooLarge) as info:
        files.write_file(alice.sftp, f"{scratch}/kept.txt", [b"x" * 600, b"x" * 600], max_bytes=1000)
    assert mapping_for(info.value).status == 413
    assert names_in(alice, scratch) == {"kept.txt"}
    assert read_all(alice, f"{scratch}/kept.txt") == b"original"


def temp_files(directory: str) -> list[str]:
    """The service's temporary upload files in a directory, as root sees them on the cluster host."""
    return sorted(f"{directory}/{n}" for n in os.listdir(directory) if n.startswith(files.TEMP_PREFIX))


def open_anywhere(path: str) -> bool:
    """Whether any process on this host (the cluster's login node) holds ``path`` open."""
    for fd_dir in glob.glob("/proc/[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for fd in os.listdir(fd_dir):
                with contextlib.suppress(OSError):
                    if os.readlink(f"{fd_dir}/{fd}") == path:
                        return True
    return False


def private_while_in_flight(bob: Session, directory: str, seen: dict) -> Iterator[bytes]:
    """Upload chunks that pause after the first to look, as root and as bob, at the temporary file."""
    yield b"new private content\n" * 5000
    (temp,) = temp_files(directory)
    # the first bytes are on the cluster's disk: the upload is in flight
    wait_for(lambda: os.stat(temp).st_size > 0, timeout=10, interval=0.01)
    seen["mode"] = stat.S_IMODE(os.stat(temp).st_mode)
    with pytest.raises(PermissionError):
        bob.sftp.open(temp, "rb")
    yield b"the end\n"


def test_an_overwrite_never_shows_the_new_content_to_others(alice, bob, scratch):
    secret = f"{scratch}/secret.txt"
    files.write_file(alice.sftp, secret, [b"old"])
    alice.sftp.chmod(secret, 0o600)
    seen: dict = {}
    files.write_file(alice.sftp, secret, private_while_in_flight(bob, scratch, seen), run=alice.run)
    assert seen["mode"] == 0o600
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert read_all(alice, secret).endswith(b"the end\n")
    # a group-readable target: the temporary file is 0600 until the data is in, then gets 0640
    alice.sftp.chmod(secret, 0o640)
    files.write_file(alice.sftp, secret, private_while_in_flight(bob, scratch, seen), run=alice.run)
    assert seen["mode"] == 0o600 and stat.S_IMODE(os.stat(secret).st_mode) == 0o640
    # a read-only target: the temporary file is created 0400 (open(2) may still write what it creates)
    alice.sftp.chmod(secret, 0o400)
    files.write_file(alice.sftp, secret, private_while_in_flight(bob, scratch, seen), run=alice.run)
    assert seen["mode"] == 0o400 and stat.S_IMODE(os.stat(secret).st_mode) == 0o400
    assert read_all(alice, secret).endswith(b"the end\n")
    assert temp_files(scratch) == []


def test_a_new_file_is_private_until_written_then_gets_the_usual_mode(alice, bob, scratch):
    # what a plain create gives in this directory (the server's umask): what a new upload got before
    alice.sftp.open(f"{scratch}/plain", "wbx").close()
    usual = stat.S_IMODE(os.stat(f"{scratch}/plain").st_mode)
    seen: dict = {}
    created, meta = files.write_file(
        alice.sftp, f"{scratch}/new.txt", private_while_in_flight(bob, scratch, seen), run=alice.run
    )
    assert created and seen["mode"] == 0o600
    assert meta["mode"] == f"{usual:04o}" == f"{stat.S_IMODE(os.stat(f'{scratch}/new.txt').st_mode):04o}"
    assert temp_files(scratch) == []


def test_a_dead_link_leaves_a_private_temp_file_that_a_later_write_sweeps(alice, scratch, clusters, users):
    doomed = _connect(clusters[alice.cluster], users["alice"], alice.cluster)

    def cut_mid_way() -> Iterator[bytes]:
        yield b"x" * 300_000
        doomed.client.close()
        yield b"y" * 300_000

    with pytest.raises((OSError, EOFError, paramiko.SSHException, DomainError)):
        files.write_file(doomed.sftp, f"{scratch}/cut.bin", cut_mid_way())
    # nothing could remove it over the dead link; it stays, but private
    (orphan,) = temp_files(scratch)
    assert stat.S_IMODE(os.stat(orphan).st_mode) == 0o600
    # the server may still be writing what it had received: let its sftp session end first
    wait_for(lambda: not open_anywhere(orphan), timeout=15, interval=0.05)
    two_days_ago = time.time() - 2 * 86400
    os.utime(orphan, (two_days_ago, two_days_ago))
    # kept: a young one (an upload in flight), one of bob's, and a symlink (whose target must survive)
    young = f"{scratch}/{files.TEMP_PREFIX}young"
    theirs = f"{scratch}/{files.TEMP_PREFIX}bobs"
    link = f"{scratch}/{files.TEMP_PREFIX}link"
    precious = f"{scratch}/precious.txt"
    for path, owner in ((young, "alice"), (theirs, "bob"), (precious, "alice")):
        with open(path, "wb") as handle:
            handle.write(b"keep")
        os.chown(path, users[owner]["uid"], -1)
    os.utime(theirs, (two_days_ago, two_days_ago))
    os.symlink(precious, link)
    os.chown(link, users["alice"]["uid"], -1, follow_symlinks=False)
    os.utime(link, (two_days_ago, two_days_ago), follow_symlinks=False)

    commands: list[str] = []

    def counted(argv):
        commands.append(argv[0])
        return alice.run(argv)

    files.write_file(alice.sftp, f"{scratch}/next.txt", [b"next"], run=counted)
    assert temp_files(scratch) == sorted([young, theirs, link])
    with open(precious, "rb") as handle:
        assert handle.read() == b"keep"
    # one sweep per directory and connection per interval: the next write there runs no find
    assert commands.count("find") == 1
    files.write_file(alice.sftp, f"{scratch}/again.txt", [b"again"], run=counted)
    assert commands.count("find") == 1


@contextlib.contextmanager
def tiny_filesystem(path: str, uid: int) -> Iterator[None]:
    """A 1 MiB tmpfs owned by the user, mounted by root on this (loopback) cluster host."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny file system needs root on the test bed host")
    options = f"size=1m,uid={uid},gid=10000,mode=0700"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", path], check=True)


def test_full_disk_is_insufficient_storage(alice, users, scratch):
    full = f"{scratch}/full"
    alice.sftp.mkdir(full)
    files.write_file(alice.sftp, f"{scratch}/big.bin", [b"z" * (2 * 2**20)])
    with tiny_filesystem(full, users["alice"]["uid"]):
        with pytest.raises(files.InsufficientStorage) as info:
            files.write_file(alice.sftp, f"{full}/big.bin", [b"z" * 2**19] * 4)
        assert mapping_for(info.value).status == 507
        assert names_in(alice, full) == set()
        with pytest.raises(files.InsufficientStorage):
            files.copy(alice.sftp, alice.run, f"{scratch}/big.bin", f"{full}/copy.bin")
        assert names_in(alice, full) == set()


# ---------------------------------------------------------------------------- move, copy, delete


def test_move(alice, scratch):
    files.write_file(alice.sftp, f"{scratch}/a.txt", [b"a"])
    files.write_file(alice.sftp, f"{scratch}/b.txt", [b"b"])
    # OpenSSH's plain SFTP rename refuses to replace an existing file: what move relies on
    with pytest.raises(OSError):
        alice.sftp.rename(f"{scratch}/a.txt", f"{scratch}/b.txt")
    with pytest.raises(files.AlreadyExists) as info:
        files.move(alice.sftp, f"{scratch}/a.txt", f"{scratch}/b.txt")
    assert info.value.field == "to"
    assert read_all(alice, f"{scratch}/b.txt") == b"b"
    meta = files.move(alice.sftp, f"{scratch}/a.txt", f"{scratch}/c.txt")
    assert (meta["name"], meta["size"]) == ("c.txt", 1)
    assert names_in(alice, scratch) == {"b.txt", "c.txt"}
    with pytest.raises(files.NoSuchPath):
        files.move(alice.sftp, f"{scratch}/a.txt", f"{scratch}/d.txt")
    with pytest.raises(files.NoSuchPath):
        files.move(alice.sftp, f"{scratch}/c.txt", f"{scratch}/no/d.txt")
    files.make_directory(alice.sftp, f"{scratch}/dir")
    files.make_directory(alice.sftp, f"{scratch}/other")
    with pytest.raises(files.InvalidMove):
        files.move(alice.sftp, f"{scratch}/dir", f"{scratch}/dir/sub")
    with pytest.raises(files.AlreadyExists):
        files.move(alice.sftp, f"{scratch}/dir", f"{scratch}/other")
    files.move(alice.sftp, f"{scratch}/dir", f"{scratch}/other/dir")
    assert names_in(alice, f"{scratch}/other") == {"dir"}


def test_a_copy_cut_short_leaves_no_half_copy(alice, scratch):
    files.make_directory(alice.sftp, f"{scratch}/tree/sub", parents=True)
    files.write_file(alice.sftp, f"{scratch}/tree/sub/f.txt", [b"deep"])

    def times_out(argv):
        # cp has run (part of a tree may be there), then the pool gives up on it
        result = alice.run(argv)
        if argv[2] == "cp":
            raise RemoteTimeout(alice.cluster, "command timed out")
        return result

    with pytest.raises(RemoteTimeout):
        files.copy(alice.sftp, times_out, f"{scratch}/tree", f"{scratch}/copy")
    assert names_in(alice, scratch) == {"tree"}


def test_copy(alice, scratch):
    files.make_directory(alice.sftp, f"{scratch}/tree/sub", parents=True)
    files.write_file(alice.sftp, f"{scratch}/tree/sub/f.txt", [b"deep"])
    alice.sftp.chmod(f"{scratch}/tree/sub/f.txt", 0o600)
    alice.sftp.symlink("sub/f.txt", f"{scratch}/tree/link")
    meta = files.copy(alice.sftp, alice.run, f"{scratch}/tree", f"{scratch}/copy")
    assert meta["type"] == "directory"
    assert names_in(alice, f"{scratch}/copy") == {"sub", "link"}
    assert alice.sftp.readlink(f"{scratch}/copy/link") == "sub/f.txt"
    copied = files.get_metadata(alice.sftp, f"{scratch}/copy/sub/f.txt")
    assert (copied["mode"], read_all(alice, f"{scratch}/copy/sub/f.txt")) == ("0600", b"deep")
    with pytest.raises(files.AlreadyExists):
        files.copy(alice.sftp, alice.run, f"{scratch}/tree", f"{scratch}/copy")
    with pytest.raises(files.InvalidMove):
        files.copy(alice.sftp, alice.run, f"{scratch}/tree", f"{scratch}/tree/sub/again")
    with pytest.raises(files.NoSuchPath):
        files.copy(alice.sftp, alice.run, f"{scratch}/nothing", f"{scratch}/x")
    with pytest.raises(files.NoSuchPath):
        files.copy(alice.sftp, alice.run, f"{scratch}/tree", f"{scratch}/no/such/parent")
    meta = files.copy(alice.sftp, alice.run, f"{scratch}/tree/sub/f.txt", f"{scratch}/f2.txt")
    assert (meta["type"], meta["size"]) == ("file", 4)
    with pytest.raises(files.PermissionDenied):
        files.copy(alice.sftp, alice.run, f"{scratch}/f2.txt", "/root/f2.txt")


def test_delete(alice, scratch):
    files.make_directory(alice.sftp, f"{scratch}/full/sub", parents=True)
    files.write_file(alice.sftp, f"{scratch}/full/sub/f", [b"x"])
    files.make_directory(alice.sftp, f"{scratch}/empty")
    files.write_file(alice.sftp, f"{scratch}/target.txt", [b"t"])
    alice.sftp.symlink(f"{scratch}/full", f"{scratch}/link")

    files.delete(alice.sftp, f"{scratch}/link", recursive=True, run=alice.run)  # the link, not the tree
    assert names_in(alice, f"{scratch}/full/sub") == {"f"}
    with pytest.raises(files.DirectoryNotEmpty):
        files.delete(alice.sftp, f"{scratch}/full")
    files.delete(alice.sftp, f"{scratch}/empty")
    files.delete(alice.sftp, f"{scratch}/target.txt")
    files.delete(alice.sftp, f"{scratch}/full", recursive=True, run=alice.run)
    assert names_in(alice, scratch) == set()
    with pytest.raises(files.NoSuchPath):
        files.delete(alice.sftp, f"{scratch}/full")
    with pytest.raises(InvalidArgument):
        files.delete(alice.sftp, "/", recursive=True, run=alice.run)


# --------------------------------------------------------------------------------- hostile names


def test_hostile_names_round_trip(alice, scratch):
    moved_dir = f"{scratch}/moved"
    files.make_directory(alice.sftp, moved_dir)
    for index, name in enumerate(HOSTILE_NAMES):
        path = posixpath.join(scratch, name)
        payload = f"{index}:{name}".encode()
        created, meta = files.write_file(alice.sftp, path, [payload], run=alice.run)
        assert created and meta["name"] == name and meta["path"] == path
        listed = files.list_directory(alice.sftp, scratch, limit=files.MAX_LIST_LIMIT)
        assert name in [e["name"] for e in listed["entries"]]
        copy_path = posixpath.join(moved_dir, "copy of " + name[:100])
        files.copy(alice.sftp, alice.run, path, copy_path)
        assert read_all(alice, copy_path) == payload
        new_path = posixpath.join(moved_dir, name)
        files.move(alice.sftp, path, new_path)
        assert read_all(alice, new_path, offset=len(f"{index}:")) == name.encode()
        files.delete(alice.sftp, new_path)
        files.delete(alice.sftp, copy_path)
        # a directory of that name, copied and removed as trees by cp/rm on the cluster
        files.make_directory(alice.sftp, f"{path}/inner", parents=True)
        files.touch(alice.sftp, f"{path}/inner/{name}")
        files.copy(alice.sftp, alice.run, path, f"{scratch}/copy-{index}")
        assert names_in(alice, f"{scratch}/copy-{index}/inner") == {name}
        files.delete(alice.sftp, path, recursive=True, run=alice.run)
        assert name not in names_in(alice, scratch)
    assert names_in(alice, moved_dir) == set()
    leftovers = names_in(alice, scratch) - {"moved"}
    assert len(leftovers) == len(HOSTILE_NAMES)
    for name in leftovers:
        files.delete(alice.sftp, posixpath.join(scratch, name), recursive=True, run=alice.run)
    assert names_in(alice, scratch) == {"moved"}


def test_hostile_path_with_slashes(alice, scratch):
    """The literal path ".../$(touch /tmp/pwned)": directories "$(touch " and "tmp", file "pwned)"."""
    path = f"{scratch}/$(touch /tmp/pwned)"
    files.make_directory(alice.sftp, posixpath.dirname(path), parents=True)
    files.write_file(alice.sftp, path, [b"not a command"])
    listed = files.list_directory(alice.sftp, f"{scratch}/$(touch /tmp")
    assert [e["name"] for e in listed["entries"]] == ["pwned)"]
    files.copy(alice.sftp, alice.run, f"{scratch}/$(touch ", f"{scratch}/copy $(touch ")
    assert read_all(alice, f"{scratch}/copy $(touch /tmp/pwned)") == b"not a command"
    files.move(alice.sftp, path, f"{scratch}/$(touch /tmp/pwned2)")
    files.delete(alice.sftp, f"{scratch}/$(touch ", recursive=True, run=alice.run)
    files.delete(alice.sftp, f"{scratch}/copy $(touch ", recursive=True, run=alice.run)
    assert names_in(alice, scratch) == set()


# ---------------------------------------------------------------------------------- permissions


def test_bob_is_denied_in_alices_private_directory(alice, bob, scratch):
    private = f"{scratch}/private"
    files.make_directory(alice.sftp, private)
    alice.sftp.chmod(scratch, 0o755)
    alice.sftp.chmod(private, 0o700)
    files.write_file(alice.sftp, f"{private}/secret.txt", [b"secret"])
    for attempt in (
        lambda: files.get_metadata(bob.sftp, f"{private}/secret.txt"),
        lambda: files.read_chunks(bob.sftp, f"{private}/secret.txt"),
        lambda: files.list_directory(bob.sftp, private),
        lambda: files.write_file(bob.sftp, f"{private}/secret.txt", [b"mine"]),
        lambda: files.delete(bob.sftp, f"{private}/secret.txt"),
        lambda: files.copy(bob.sftp, bob.run, f"{private}/secret.txt", f"/home/bob/{uuid.uuid4().hex}"),
        lambda: files.touch(bob.sftp, f"{scratch}/bob-was-here"),
    ):
        with pytest.raises(files.PermissionDenied) as info:
            attempt()
        assert mapping_for(info.value).status == 403
    assert read_all(alice, f"{private}/secret.txt") == b"secret"
    assert names_in(alice, scratch) == {"private"}


def test_paths_are_validated_before_any_remote_call(alice):
    for bad in ("relative/path", "/with\x00nul", "/" + "a" * 4096, "/" + "b" * 256, ""):
        with pytest.raises(InvalidArgument) as info:
            files.get_metadata(alice.sftp, bad)
        assert (mapping_for(info.value).status, info.value.field) == (400, "path")
    with pytest.raises(InvalidArgument) as info:
        files.move(alice.sftp, "/home/alice", "home/alice2")
    assert info.value.field == "to"


def test_ids_without_names_show_as_numbers(alice, scratch):
    if os.geteuid() != 0:
        pytest.skip("giving a file to an unknown uid needs root on the test bed host")
    files.write_file(alice.sftp, f"{scratch}/orphan", [b"x"])
    os.chown(f"{scratch}/orphan", 54321, 54322)  # the clusters' file system is this host's
    meta = files.get_metadata(alice.sftp, f"{scratch}/orphan")
    assert (meta["owner"], meta["group"]) == ("54321", "54322")
    entry = files.list_directory(alice.sftp, scratch)["entries"][0]
    assert (entry["owner"], entry["group"]) == ("54321", "54322")


def test_getent_fallback_names_ids(alice):
    """The runner path used for id names when a server lacks OpenSSH's users-groups-by-id."""
    result = alice.run(["getent", "passwd", "10001", "10002"])
    assert files.parse_getent(result.text()) == {10001: "alice", 10002: "bob"}
    assert files.parse_getent(alice.run(["getent", "group", "10000"]).text()) == {10000: "hpcusers"}


def test_the_home_directory_is_asked_once_per_connection(alice, bob, monkeypatch):
    assert files.home_directory(alice.sftp) == "/home/alice"
    # a second SFTP session of the same connection answers from the cache, without a round trip
    other = alice.client.open_sftp()
    try:
        monkeypatch.setattr(other, "normalize", lambda path: pytest.fail("asked the server again"))
        assert files.home_directory(other) == "/home/alice"
    finally:
        other.close()
    # another user's connection has its own answer
    assert files.home_directory(bob.sftp) == "/home/bob"


def test_pages_of_a_large_directory_come_from_one_read_while_it_is_unchanged(alice, scratch, monkeypatch):
    for i in range(25):
        alice.sftp.open(f"{scratch}/f{i:02d}", "w").close()
    alice.sftp.mkdir(f"{scratch}/d")
    snapshots = files.ListingSnapshots(60)
    reads = []
    real_read = files.listing.read_directory_rows

    def counted(sftp, path):
        reads.append(path)
        return real_read(sftp, path)

    monkeypatch.setattr(files.listing, "read_directory_rows", counted)
    pages = [
        files.list_directory(alice.sftp, scratch, offset=o, limit=10, snapshots=snapshots)
        for o in (0, 10, 20)
    ]
    assert len(reads) == 1
    # the same pages as reading the directory for each of them
    assert pages == [files.list_directory(alice.sftp, scratch, offset=o, limit=10) for o in (0, 10, 20)]
    assert [e["name"] for e in pages[0]["entries"]][:2] == ["d", "f00"]
    assert {p["total"] for p in pages} == {26}
    # an entry removed: the directory changed, so the next page reads it again and shows it gone
    time.sleep(1.1)  # SFTP's mtime has whole seconds
    alice.sftp.remove(f"{scratch}/f24")
    last = files.list_directory(alice.sftp, scratch, offset=20, limit=10, snapshots=snapshots)
    assert len(reads) == 2 + 3  # the three pages without snapshots above, then this read
    assert last["total"] == 25 and "f24" not in [e["name"] for e in last["entries"]]
    # past ttl, a snapshot is not used
    clock = [0.0]
    timed = files.ListingSnapshots(5, clock=lambda: clock[0])
    files.list_directory(alice.sftp, scratch, offset=0, limit=10, snapshots=timed)
    clock[0] = 5.0
    files.list_directory(alice.sftp, scratch, offset=10, limit=10, snapshots=timed)
    assert len(reads) == 7


def test_a_listing_snapshot_is_per_connection(alice, bob, scratch):
    for i in range(12):
        alice.sftp.open(f"{scratch}/f{i:02d}", "w").close()
    snapshots = files.ListingSnapshots(60)
    files.list_directory(alice.sftp, scratch, offset=0, limit=10, snapshots=snapshots)
    # bob may not read alice's directory: a snapshot of alice's connection must not answer him
    alice.sftp.chmod(scratch, 0o700)
    with pytest.raises(files.PermissionDenied):
        files.list_directory(bob.sftp, scratch, offset=10, limit=10, snapshots=snapshots)


def test_a_directory_over_the_snapshot_bound_is_paged_without_one(alice, scratch, monkeypatch):
    for i in range(30):
        alice.sftp.open(f"{scratch}/f{i:02d}", "w").close()
    snapshots = files.ListingSnapshots(60)
    monkeypatch.setattr(snapshots, "MAX_DIRECTORY", 20)
    pages = [
        files.list_directory(alice.sftp, scratch, offset=o, limit=10, snapshots=snapshots)
        for o in (0, 10, 20)
    ]
    assert pages == [files.list_directory(alice.sftp, scratch, offset=o, limit=10) for o in (0, 10, 20)]
    assert [e["name"] for p in pages for e in p["entries"]] == [f"f{i:02d}" for i in range(30)]
    assert snapshots._rows == 0


# ------------------------------------------------------------------------ upload records (leftovers)


class RecordingJournal:
    """The TempJournal contract, kept in a list: which temporary files are on record now."""

    def __init__(self) -> None:
        self.open: dict[int, str] = {}
        self.seen: list[str] = []

    def started(self, temp: str) -> int:
        self.seen.append(temp)
        self.open[len(self.seen)] = temp
        return len(self.seen)

    def ended(self, record: object) -> None:
        del self.open[record]


def test_an_upload_keeps_its_temporary_file_on_record_only_while_it_exists(alice, scratch):
    journal = RecordingJournal()
    files.write_file(alice.sftp, f"{scratch}/a.txt", [b"data"], run=alice.run, journal=journal)
    [temp] = journal.seen
    assert posixpath.dirname(temp) == scratch and posixpath.basename(temp).startswith(files.TEMP_PREFIX)
    assert journal.open == {}
    # refused while streaming: the service removes the file, so the record goes too
    with pytest.raises(files.PayloadTooLarge):
        files.write_file(alice.sftp, f"{scratch}/b.txt", [b"x" * 10], max_bytes=5, journal=journal)
    assert len(journal.seen) == 2 and journal.open == {}
    # refused before any temporary file: nothing recorded
    with pytest.raises(files.AlreadyExists):
        files.write_file(alice.sftp, f"{scratch}/a.txt", [b"x"], overwrite=False, journal=journal)
    assert len(journal.seen) == 2
    # the create itself refused (a read-only directory): recorded, then forgotten
    alice.sftp.mkdir(f"{scratch}/ro")
    alice.sftp.chmod(f"{scratch}/ro", 0o500)
    with pytest.raises(files.PermissionDenied):
        files.write_file(alice.sftp, f"{scratch}/ro/c.txt", [b"x"], journal=journal)
    assert len(journal.seen) == 3 and journal.open == {}
    assert not [n for n in alice.sftp.listdir(scratch) if n.startswith(files.TEMP_PREFIX)]


def test_remove_leftover_removes_only_old_temporary_regular_files(alice, scratch):
    from datetime import UTC, datetime, timedelta

    from hcc_federation.files.leftovers import ALIVE, GONE, NOT_OURS, REMOVED, remove_leftover

    now = datetime.now(UTC)
    day_ago = now - timedelta(days=1)
    old = time.time() - 25 * 3600

    def made(name: str, kind: str = "file") -> str:
        path = f"{scratch}/{name}"
        if kind == "file":
            with alice.sftp.open(path, "wb") as handle:
                handle.write(b"left")
        elif kind == "dir":
            alice.sftp.mkdir(path)
        else:
            alice.sftp.symlink(f"{scratch}/target", path)
        if kind != "link":
            alice.sftp.utime(path, (old, old))
        return path

    made("target")
    leftover, young = made(".hcc-upload-old"), made(".hcc-upload-young")
    alice.sftp.utime(young, None)
    link, folder, other = made(".hcc-upload-link", "link"), made(".hcc-upload-dir", "dir"), made("plain.txt")
    assert remove_leftover(alice.sftp, leftover, day_ago) == REMOVED
    assert remove_leftover(alice.sftp, leftover, day_ago) == GONE
    assert remove_leftover(alice.sftp, young, day_ago) == ALIVE
    # a symlink planted under a temporary name: neither it nor what it points at is touched
    assert remove_leftover(alice.sftp, link, day_ago) == NOT_OURS
    assert remove_leftover(alice.sftp, folder, day_ago) == NOT_OURS
    assert remove_leftover(alice.sftp, other, day_ago) == NOT_OURS
    assert sorted(alice.sftp.listdir(scratch)) == sorted(
        [".hcc-upload-young", ".hcc-upload-link", ".hcc-upload-dir", "plain.txt", "target"]
    )


def _listing_as_before(session: Session, path: str, names: files.metadata.IdNames) -> list[dict]:
    """The entries as list_directory made them before its fast paths: paramiko's own parser
    (listdir_attr), attr_metadata, guess_mime and readlink for each entry."""
    attrs = session.sftp.listdir_attr(path)
    attrs.sort(key=lambda a: (0 if stat.S_ISDIR(a.st_mode) else 1, a.filename))
    entries = []
    for attr in attrs:
        entry = files.metadata.attr_metadata(posixpath.join(path, attr.filename), attr, names)
        if entry["type"] == "symlink":
            entry["target"] = files.metadata.readlink(session.sftp, entry["path"])
        elif entry["type"] == "file":
            entry["mime"] = files.guess_mime(attr.filename)
            entry["text"] = None
        entries.append(entry)
    return entries


def test_a_listing_of_hostile_entries_is_what_it_was(alice, scratch, users):
    """Names with spaces, newlines, quotes, UTF-8 and shell syntax; symlinks (to a directory, to a
    file, dangling, with a hostile target); a fifo, a device, a socket, set-id bits, a stranger's
    ids: the entries and their JSON text are what paramiko's parser and attr_metadata make."""
    if os.geteuid() != 0:
        pytest.skip("devices and a stranger's ids need root on the test bed host")
    made = []
    for name in HOSTILE_NAMES + ["a.txt", "b.tar.gz", "data:text,x", ".hidden", "..dots", "名前.json"]:
        made.append(f"{scratch}/{name}")
        with open(made[-1], "wb") as handle:
            handle.write(name.encode())
    os.mkdir(f"{scratch}/sub dir\n")
    os.symlink("sub dir\n", f"{scratch}/link to dir")
    os.symlink("a.txt", f"{scratch}/link to file")
    os.symlink('/nowhere/"quoted" ☃\n', f"{scratch}/dangling")
    os.mkfifo(f"{scratch}/fifo")
    os.mknod(f"{scratch}/null device", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(f"{scratch}/sock")
    os.chmod(made[0], 0o4755)  # noqa: S103 (set-id bits to list, in a test directory)
    os.chmod(f"{scratch}/sub dir\n", 0o3775)  # noqa: S103
    for entry in os.listdir(scratch):
        os.chown(f"{scratch}/{entry}", users["alice"]["uid"], -1, follow_symlinks=False)
    os.chown(made[1], 54321, 54322)  # ids without names: shown as numbers
    snapshots = files.ListingSnapshots(60)
    pages = [
        files.read_page(alice.sftp, scratch, offset=o, limit=7, run=alice.run, snapshots=snapshots)
        for o in range(0, 35, 7)
    ]
    whole = files.read_page(alice.sftp, scratch, limit=None, run=alice.run)
    names = files.metadata.resolve_ids(alice.sftp, [54321], [54322], alice.run)
    expected = _listing_as_before(alice, scratch, names)
    assert len(expected) == whole.total == pages[0].total == len(made) + 7
    assert {e["type"] for e in expected} == {"file", "directory", "symlink", "other"}
    by_page = [e for p in pages for e in p.as_dict()["entries"]]
    assert by_page == whole.as_dict()["entries"] == expected
    # the same fields in the same order, and the JSON text the API sends says the same
    assert [list(e) for e in by_page] == [list(e) for e in expected]
    for page in (*pages, whole):
        assert json.loads(b"".join(page.json_chunks(batch=3))) == page.as_dict()
    assert (whole.offset, whole.limit) == (0, len(expected))
    # the whole listing came from find, not from SFTP after find failed: both readers agree
    found = files.listing._find_rows(alice.run, scratch)
    assert found is not None
    read = [row for rows in read_directory_rows(alice.sftp, scratch) for row in rows]
    assert sorted(found) == sorted(read) and len(found) == len(expected)
    rest = files.read_page(alice.sftp, scratch, offset=20, limit=None)
    assert (rest.limit, rest.as_dict()["entries"]) == (len(expected) - 20, expected[20:])


def test_a_whole_listing_that_find_cannot_make_is_sftps(alice, scratch):
    """A directory the user may read but not search: find fails on every entry, sftp-server skips
    the entries it cannot stat. The whole listing is SFTP's answer, as each page is."""
    alice.sftp.mkdir(f"{scratch}/unsearchable")
    for name in ("a", "b"):
        alice.sftp.open(f"{scratch}/unsearchable/{name}", "w").close()
    alice.sftp.chmod(f"{scratch}/unsearchable", 0o600)
    path = f"{scratch}/unsearchable"
    assert files.listing._find_rows(alice.run, path) is None
    whole = files.read_page(alice.sftp, path, limit=None, run=alice.run).as_dict()
    paged = files.read_page(alice.sftp, path, limit=1000).as_dict()
    assert (whole["entries"], whole["total"]) == (paged["entries"], paged["total"])


def test_a_whole_listing_past_its_bound_is_refused_after_reading_that_many(alice, scratch, monkeypatch):
    for i in range(6):
        alice.sftp.open(f"{scratch}/f{i}", "w").close()
    monkeypatch.setattr(files.listing, "MAX_WHOLE_LISTING", 5)
    for run in (alice.run, None):  # by find, and by SFTP
        with pytest.raises(files.ListingTooLarge):
            files.read_page(alice.sftp, scratch, limit=None, run=run)
    # the session is left with no answer outstanding: it serves the next request
    assert files.read_page(alice.sftp, scratch, limit=10).total == 6
    monkeypatch.setattr(files.listing, "MAX_WHOLE_LISTING", 6)
    assert files.read_page(alice.sftp, scratch, limit=None, run=alice.run).limit == 6
