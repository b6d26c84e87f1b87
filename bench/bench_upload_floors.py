"""Where the time of a large upload goes: each stage of PUT /files/content alone, in one run, in turns.

Issue 14 asks for a 256 MiB upload through mod_wsgi at >= 1.0x `scp`. The service's pipeline on this
machine is: the client's TLS encryption, Apache's TLS decryption and its hand-over to the mod_wsgi
daemon, the service (the body read from wsgi.input, SFTP WRITEs through paramiko, SSH encryption),
then the cluster's sshd (SSH decryption) and sftp-server (the writes); `scp` is only the last two and
its own ssh client's encryption. Each kind below is one of those stages or a sum of them, for
`--size-mib` bytes (a random 1 MiB block repeated, as bench_peer_goals.py sends), as alice on alpha:

(a) Apache + TLS alone: an Apache of the bench's own from the bed's template (common.apache: TLS,
    mod_wsgi daemon mode, the service user and venv) serving an app that only reads the request body
    (in pieces of upload.UPLOAD_CHUNK, as the service reads it) and discards it;
(b) SFTP alone: the service's write path (files.write_file: a temporary file, pipelined WRITEs,
    rename) over the pool's connection (ConnectionPool, as the service holds it), in this process,
    with the body's pieces from memory: no HTTP at all; and the same with paramiko's own pipelined
    ``SFTPFile.write`` in place of ``paramiko_compat.send_writes`` (the write path before it);
(c) `scp` over a ControlMaster connection (OpenSSH 9 sends it as SFTP WRITEs to the same sftp-server);
(d) the whole service: PUT /files/content through Apache mod_wsgi serving this checkout, and through
    waitress (a `pserve` process; waitress reads the whole body before the app sees it); with
    `--baseline-root`, also another checkout through an Apache of its own (the same figures before a change).

Next to each rate (the median of `--rounds`, the kinds in turns), the CPU seconds it took, per upload:
this process (the HTTP client's TLS in (a) and (d), paramiko in (b)), Apache's own processes (TLS,
and the hand-over to the daemon), the WSGI app (mod_wsgi's daemon, or the pserve process), the
cluster's side of the upload's SSH connection (its sshd and sftp-server), `scp`'s ssh (the
ControlMaster), and the whole machine's busy time (all cores: other people's work included, so only
read it on a quiet machine). A stage whose CPU per upload, divided by the 2 cores, is longer than
`scp`'s time bounds what the whole pipeline can reach.

The first SFTP kind of a round pays for what the round before left on the cluster (dirty pages
written back, the replaced 256 MiB files freed), so paramiko's variant of (b) runs before send_writes'.

Run as root with the test bed up:  .venv/bin/python bench/bench_upload_floors.py [--size-mib 256]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from bench_peer_goals import SERVER, SETTINGS, Server, files_url, hosted_settings
from common import (
    ENDPOINTS,
    USERS,
    Client,
    PatternBody,
    apache,
    close_master,
    mysql_registry,
    pserve,
    registry,
    settings,
    ssh_options,
    ssh_run,
)

from hcc_federation.files import transfer
from hcc_federation.files.transfer import write_file
from hcc_federation.files.upload import UPLOAD_CHUNK
from hcc_federation.remote import ClusterEndpoint, ConnectionPool, PasswordIdentity
from hcc_federation.remote.paramiko_compat import send_writes, write_request_size

ALPHA = ENDPOINTS["clusters"]["alpha"]
MiB = 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")

# (a): a WSGI app that reads the body as the service does (pieces of UPLOAD_CHUNK from wsgi.input)
# and keeps nothing; it answers the health check common.apache waits for, and every other request.
DISCARD_APP = f"""
def application(environ, start_response):
    stream, received = environ["wsgi.input"], 0
    while True:
        data = stream.read({UPLOAD_CHUNK})
        if not data:
            break
        received += len(data)
    body = b'{{"received": %d}}' % received
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
"""


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system, with reaped children's) of each of ``pids`` still running."""
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            out[pid] = sum(int(t) for t in fields[11:15]) / TICK
    return out


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two ``cpu_by_pid``: a process that started meanwhile counts from zero."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parents[int(entry)] = int(
                    Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[1]
                )
    return parents


def _with_descendants(roots: set[int], parents: dict[int, int]) -> list[int]:
    """``roots`` and every process below them in ``parents``, sorted."""
    found = set(roots)
    grew = True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in found and child not in found:
                found.add(child)
                grew = True
    return sorted(found)


def descendants(pid: int) -> list[int]:
    return _with_descendants({pid}, _parents())


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    out.add(link[8:-1])
    except OSError:
        pass
    return out


def _tcp() -> list[tuple[int, int, str]]:
    """(local port, remote port, inode) of every TCP socket (/proc/net/tcp and tcp6)."""
    out = []
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            out.append(
                (int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16), fields[9])
            )
    return out


def sshd_of(clients: list[int], ssh_port: int) -> list[int]:
    """The cluster's sshd processes serving the SSH connections that ``clients`` hold, and their
    children (the session's sftp-server): the cluster side of those connections only, whoever else
    works as the same user meanwhile."""
    tcp = _tcp()
    held = set().union(*(_socket_inodes(pid) for pid in clients)) if clients else set()
    ports = {local for local, remote, inode in tcp if inode in held and remote == ssh_port}
    served = {inode for local, remote, inode in tcp if local == ssh_port and remote in ports}
    parents = _parents()
    holders = {pid for pid in parents if served and _socket_inodes(pid) & served}
    return _with_descendants(holders, parents)


def is_app(pid: int) -> bool:
    """A mod_wsgi daemon process (the template's display-name=hcc-wsgi), or a pserve process."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return command.startswith(b"hcc-wsgi") or b"pserve" in command


def processes_with(argument: str) -> list[int]:
    """The processes whose command line holds ``argument`` (a ControlMaster calls itself
    "ssh: <ControlPath> [mux]")."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if argument.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    out.append(int(entry))
            except OSError:
                continue
    return out


def machine_busy_s() -> float:
    """Busy CPU seconds of all cores (/proc/stat: everything but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICK


def put_body(port: int, tls: bool, path: str, size: int, block: bytes, token: str | None) -> None:
    client = Client(port, timeout=600, blocksize=MiB, tls=tls)
    try:
        status, body = client.call(
            "PUT", path, PatternBody(size, block), token=token, headers={"Content-Length": str(size)}
        )
    finally:
        client.conn.close()
    assert status in (200, 201), body[:300]


def memory_chunks(body: bytes) -> Iterator[bytes]:
    """``body`` in new bytes objects of UPLOAD_CHUNK, as a WSGI server's reads give them."""
    view = memoryview(body)
    for start in range(0, len(view), UPLOAD_CHUNK):
        yield bytes(view[start : start + UPLOAD_CHUNK])


def paramiko_writes(handle, offset: int, data: bytes) -> int:
    """``send_writes`` as it was done before it: paramiko's own pipelined ``SFTPFile.write``."""
    handle.set_pipelined(True)
    handle.MAX_REQUEST_SIZE = write_request_size(handle.sftp)
    handle.write(data)
    return offset + len(data)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3, help="uploads of each kind, in turns")
    parser.add_argument("--kinds", default="a,b,c,d", help="which of a,b,c,d to run")
    parser.add_argument(
        "--baseline-root",
        help="another checkout (e.g. /work/base-7df6908) served by an Apache of its own as one more (d)",
    )
    args = parser.parse_args()
    kinds_wanted = set(args.kinds.split(","))
    size = args.size_mib * MiB
    block = os.urandom(MiB)
    alice = USERS["alice"]
    work = f"/home/alice/hcc-bench-floors-{uuid.uuid4().hex}"
    local = f"/dev/shm/hcc-bench-floors-{uuid.uuid4().hex}.bin"
    endpoint = ClusterEndpoint(
        "alpha", ALPHA["ssh_host"], ALPHA["ssh_port"], known_hosts=ALPHA["known_hosts"], command_timeout=120
    )
    identity = PasswordIdentity("alice", alice["password"])
    with open(local, "wb") as handle:
        for _ in range(size // MiB):
            handle.write(block)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with (
        tempfile.TemporaryDirectory(dir="/tmp") as ctl,
        ConnectionPool() as pool,
        registry() as db,
        mysql_registry() as url,
        pserve(settings(db, ["alpha"], SETTINGS), threads=16, server_options=SERVER) as (wport, wproc),
        apache(hosted_settings(url), root=Path(__file__).resolve().parent.parent) as (aport, aproc),
        apache(hosted_settings(url), script=DISCARD_APP) as (dport, dproc),
        contextlib.ExitStack() as more,
    ):
        baseline = None
        if args.baseline_root:
            base_url = more.enter_context(mysql_registry())
            bport, bproc = more.enter_context(
                apache(hosted_settings(base_url), root=Path(args.baseline_root))
            )
            baseline = Server("baseline", bport, bproc, tls=True)
        control = os.path.join(ctl, "cm-alice")
        try:
            ssh_run("alpha", "alice", ["mkdir", "-p", "--", work], control)
            with pool.open_sftp(endpoint, identity) as sftp:
                sftp.stat(work)  # the pool's connection and session, made outside the measurements
            service = Server("mod_wsgi", aport, aproc, tls=True)
            waitress = Server("waitress", wport, wproc)
            scp_argv = ["scp", "-q", *ssh_options("alpha", "alice", control), "-P", str(ALPHA["ssh_port"])]

            def discard() -> None:
                put_body(dport, True, "/discard", size, block, None)

            body = block * (size // MiB)

            def sftp_only() -> None:
                with pool.open_sftp(endpoint, identity) as sftp:
                    write_file(sftp, f"{work}/b.bin", memory_chunks(body))

            def sftp_paramiko() -> None:
                # (b) with paramiko's own pipelined writes in write_file, as before send_writes
                try:
                    transfer.send_writes = paramiko_writes
                    with pool.open_sftp(endpoint, identity) as sftp:
                        write_file(sftp, f"{work}/b0.bin", memory_chunks(body))
                finally:
                    transfer.send_writes = send_writes

            def scp() -> None:
                target = f"alice@{ALPHA['ssh_host']}:{work}/c.bin"
                subprocess.run([*scp_argv, local, target], check=True, capture_output=True)

            def through(server: Server) -> Callable[[], None]:
                path = files_url("/content", path=f"{work}/d-{server.label}.bin")
                return lambda: put_body(server.port, server.tls, path, size, block, server.tokens["alice"])

            port = ALPHA["ssh_port"]
            # (label, letter, the upload, the server process, the processes holding its SSH connection)
            kinds = [
                ("(a) Apache+TLS, body read and discarded", "a", discard, dproc, list),
                (
                    "(b) the same with paramiko's SFTPFile.write",
                    "b",
                    sftp_paramiko,
                    None,
                    lambda: [os.getpid()],
                ),
                ("(b) SFTP write path from memory, no HTTP", "b", sftp_only, None, lambda: [os.getpid()]),
                ("(c) scp", "c", scp, None, lambda: processes_with(f"ssh: {control} [mux]")),
                (
                    "(d) the service through mod_wsgi",
                    "d",
                    through(service),
                    aproc,
                    lambda: descendants(aproc.pid),
                ),
                ("(d) the service through waitress", "d", through(waitress), wproc, lambda: [wproc.pid]),
            ]
            if baseline is not None:
                kinds.append(
                    (
                        f"(d) the baseline ({args.baseline_root}) through mod_wsgi",
                        "d",
                        through(baseline),
                        baseline.process,
                        lambda: descendants(baseline.process.pid),
                    )
                )
            kinds = [kind for kind in kinds if kind[1] in kinds_wanted]
            for server in (service, waitress, *([baseline] if baseline else [])):
                server.get(files_url(path=work))  # the service's SSH connections, made beforehand
            rates: dict[str, list[float]] = {kind[0]: [] for kind in kinds}
            cpu: dict[str, list[tuple[float, ...]]] = {kind[0]: [] for kind in kinds}
            for _ in range(args.rounds):
                for label, _, run, server, clients in kinds:
                    pids = {
                        "tls": [pid for pid in descendants(server.pid) if not is_app(pid)] if server else [],
                        "app": [pid for pid in descendants(server.pid) if is_app(pid)] if server else [],
                        "cluster": sshd_of(clients(), port),
                        "ssh": processes_with(f"ssh: {control} [mux]") if label == "(c) scp" else [],
                    }
                    before = {key: cpu_by_pid(value) for key, value in pids.items()}
                    own, busy = time.process_time(), machine_busy_s()
                    start = time.perf_counter()
                    run()
                    elapsed = time.perf_counter() - start
                    own, busy = time.process_time() - own, machine_busy_s() - busy
                    # what started meanwhile and still runs (a new session's sftp-server) counts too
                    pids["cluster"] = sorted(set(pids["cluster"]) | set(sshd_of(clients(), port)))
                    after = {key: cpu_by_pid(value) for key, value in pids.items()}
                    rates[label].append(size / MiB / elapsed)
                    used = tuple(spent(before[key], after[key]) for key in ("tls", "app", "cluster", "ssh"))
                    cpu[label].append((own, *used, busy))
            scp_label = "(c) scp"
            scp_rate = statistics.median(rates[scp_label]) if scp_label in rates else float("nan")
            print(
                f"{args.size_mib} MiB uploads, median of {args.rounds} in turns; "
                f"load before: {' '.join(load_before)}\n"
            )
            print(
                "| kind | MiB/s | x scp | CPU s per upload: this process, Apache (TLS), WSGI app, cluster, "
                "scp's ssh, machine | every run (MiB/s) |"
            )
            print("|---|---|---|---|---|")
            for label, *_ in kinds:
                rate = statistics.median(rates[label])
                medians = [statistics.median(c[i] for c in cpu[label]) for i in range(6)]
                print(
                    f"| {label} | {rate:.0f} | {rate / scp_rate:.2f} | "
                    + " / ".join(f"{s:.2f}" for s in medians)
                    + f" | {' '.join(f'{r:.0f}' for r in rates[label])} |",
                    flush=True,
                )
        finally:
            ssh_run("alpha", "alice", ["rm", "-r", "-f", "--", work], control)
            close_master("alpha", "alice", control)
            os.remove(local)
    print(f"\nload after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
