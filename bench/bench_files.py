"""Benchmark of the file system API against OpenSSH on the same loopback, on the test bed.

Prints, in one run, against a separate `pserve` (waitress) process of the service, as alice on alpha:
- upload and download of 256 MiB through the API (PUT /files/content, a multipart POST /files/upload,
  GET /files/content) next to OpenSSH `sftp` and `scp` (both over one ControlMaster connection, as the
  service's pool keeps one), as throughput and ratios; the same through the test bed's Apache mod_wsgi
  (daemon mode, over TLS, scripts/testbed/up.sh), whose uploads stream where waitress spools them;
- listing a directory of 10,000 entries (GET /files: one page of 1,000, and all 10 pages) next to
  `ssh ls -l` through a ControlMaster, as latency and ratios;
- the service's peak memory (VmHWM from /proc) before and after a 1 GiB upload, and while it ran.

Run as root with the test bed up:  .venv/bin/python bench/bench_files.py [--size-mib 256] [--big-mib 1024]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

# bench/ is on sys.path as the running script's directory: see common.py
from common import (
    ENDPOINTS,
    Client,
    PatternBody,
    close_master,
    pserve,
    registry,
    settings,
    ssh_options,
    ssh_run,
    vm_kib,
)

ALPHA = ENDPOINTS["clusters"]["alpha"]
MiB = 1024 * 1024
BLOCK = MiB
SETTINGS = {"hcc.cluster.alpha.command_timeout": "120"}
# waitress refuses bodies over 1 GiB by default; the service has its own limit
SERVER = {"max_request_body_size": "4294967296"}


class Service:
    """The pserve process of the service, and one keep-alive connection to it logged in as alice."""

    def __init__(self, port: int, process: subprocess.Popen):
        self.process = process
        self.client = Client(port, timeout=600, blocksize=BLOCK)
        self.conn = self.client.conn
        self.token = self.client.login("alice")

    def call(self, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, bytes]:
        return self.client.call(method, path, body, token=self.token, headers=headers)

    def memory(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in KiB."""
        return vm_kib(self.process.pid, "VmRSS", "VmHWM")


class ApacheService(Service):
    """The test bed's Apache mod_wsgi (TLS, daemon mode): one keep-alive connection, logged in as alice."""

    def __init__(self):
        hosting = json.loads((Path(ENDPOINTS["state_dir"]) / "hosting.json").read_text())
        where = urllib.parse.urlsplit(hosting["apache"]["url"])
        context = ssl.create_default_context(cafile=hosting["tls_ca"])
        self.process = None
        self.client = Client(0, timeout=600, blocksize=BLOCK)
        self.client.conn = http.client.HTTPSConnection(
            where.hostname, where.port, timeout=600, context=context, blocksize=BLOCK
        )
        self.conn = self.client.conn
        self.token = self.client.login("alice")


def url(suffix: str, **params) -> str:
    return f"/api/v1/clusters/alpha/files{suffix}?{urllib.parse.urlencode(params)}"


def ssh(control: str, command: list[str]) -> bytes:
    return ssh_run("alpha", "alice", command, control)


def sftp_batch(control: str, batch: str) -> None:
    argv = [
        "sftp",
        *ssh_options("alpha", "alice", control),
        "-P",
        str(ALPHA["ssh_port"]),
        "-b",
        "-",
        f"alice@{ALPHA['ssh_host']}",
    ]
    subprocess.run(argv, input=batch.encode(), check=True, capture_output=True)


def scp(control: str, source: str, target: str) -> None:
    argv = [
        "scp",
        "-q",
        *ssh_options("alpha", "alice", control),
        "-P",
        str(ALPHA["ssh_port"]),
        source,
        target,
    ]
    subprocess.run(argv, check=True, capture_output=True)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best(fn, rounds: int) -> float:
    return min(timed(fn) for _ in range(rounds))


def upload_put(service: Service, path: str, size: int, block: bytes) -> None:
    status, body = service.call(
        "PUT", url("/content", path=path), PatternBody(size, block), {"Content-Length": str(size)}
    )
    assert status in (200, 201), body[:300]


def upload_multipart(service: Service, directory: str, name: str, size: int, block: bytes) -> None:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    class Body:
        def __init__(self):
            self.parts = [
                PatternBody(len(head), head),
                PatternBody(size, block),
                PatternBody(len(tail), tail),
            ]

        def read(self, n: int = -1) -> bytes:
            while self.parts:
                data = self.parts[0].read(n)
                if data:
                    return data
                self.parts.pop(0)
            return b""

    status, body = service.call(
        "POST",
        url("/upload", path=directory, overwrite="true"),
        Body(),
        {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + size + len(tail)),
        },
    )
    assert status in (200, 201), body[:300]


def download(service: Service, path: str, size: int) -> None:
    service.conn.request("GET", url("/content", path=path), headers=Client.auth(service.token))
    response = service.conn.getresponse()
    assert response.status == 200, response.read()[:300]
    received = 0
    while data := response.read(BLOCK):
        received += len(data)
    assert received == size, (received, size)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of N for transfers")
    parser.add_argument("--list-rounds", type=int, default=15, help="median of N for listings")
    args = parser.parse_args()
    size, big = args.size_mib * MiB, args.big_mib * MiB
    block = os.urandom(BLOCK)
    work = f"/home/alice/hcc-bench-files-{uuid.uuid4().hex}"
    local = f"/dev/shm/hcc-bench-{uuid.uuid4().hex}.bin"
    with (
        registry() as db_path,
        tempfile.TemporaryDirectory(dir="/tmp") as ctl,
        pserve(settings(db_path, ["alpha"], SETTINGS), threads=4, server_options=SERVER) as (port, process),
    ):
        control = os.path.join(ctl, "cm")
        service = Service(port, process)
        try:
            status, body = service.call("POST", "/api/v1/clusters/alpha/files/mkdir", {"path": work})
            assert status == 201, body

            # 1. peak memory during a 1 GiB upload, first, on a fresh process
            upload_put(service, f"{work}/warm", MiB, block)
            rss_before, hwm_before = service.memory()
            peak_rss = [rss_before]
            done = threading.Event()

            def sample():
                while not done.wait(0.05):
                    peak_rss.append(service.memory()[0])

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            big_time = timed(lambda: upload_put(service, f"{work}/big.bin", big, block))
            done.set()
            sampler.join()
            rss_after, hwm_after = service.memory()
            service.call("DELETE", url("", path=f"{work}/big.bin"))

            # 2. 256 MiB up and down: the API and OpenSSH on the same loopback
            with open(local, "wb") as handle:
                for _ in range(size // BLOCK):
                    handle.write(block)
            ssh(control, ["true"])  # the master connection, outside the measurements
            api_put = best(lambda: upload_put(service, f"{work}/api.bin", size, block), args.rounds)
            api_multipart = best(
                lambda: upload_multipart(service, work, "form.bin", size, block), args.rounds
            )
            api_get = best(lambda: download(service, f"{work}/api.bin", size), args.rounds)
            apache = ApacheService()
            wsgi_put = best(lambda: upload_put(apache, f"{work}/wsgi.bin", size, block), args.rounds)
            wsgi_multipart = best(
                lambda: upload_multipart(apache, work, "wsgi-form.bin", size, block), args.rounds
            )
            wsgi_get = best(lambda: download(apache, f"{work}/wsgi.bin", size), args.rounds)
            sftp_put = best(lambda: sftp_batch(control, f"put {local} {work}/sftp.bin\n"), args.rounds)
            sftp_get = best(lambda: sftp_batch(control, f"get {work}/sftp.bin /dev/null\n"), args.rounds)
            scp_put = best(
                lambda: scp(control, local, f"alice@{ALPHA['ssh_host']}:{work}/scp.bin"), args.rounds
            )
            scp_get = best(
                lambda: scp(control, f"alice@{ALPHA['ssh_host']}:{work}/scp.bin", "/dev/null"), args.rounds
            )
            digest = hashlib.sha256(Path(local).read_bytes()).hexdigest()
            remote = ssh(control, ["sha256sum", "--", f"{work}/api.bin"]).split()[0].decode()
            assert remote == digest, "the API stored different bytes"

            # 3. a directory of 10,000 entries
            listing_dir = f"{work}/many"
            script = (
                "import os, sys\n"
                "os.mkdir(sys.argv[1])\n"
                "for i in range(int(sys.argv[2])):\n"
                "    open(os.path.join(sys.argv[1], 'f%05d' % i), 'w').close()\n"
            )
            ssh(control, ["python3", "-c", script, listing_dir, str(args.entries)])

            def one_page():
                status, body = service.call("GET", url("", path=listing_dir, limit=1000))
                assert status == 200 and json.loads(body)["total"] == args.entries

            def all_pages():
                for offset in range(0, args.entries, 1000):
                    status, body = service.call("GET", url("", path=listing_dir, offset=offset, limit=1000))
                    assert status == 200, body[:300]

            def ls():
                out = ssh(control, ["ls", "-l", "--", listing_dir])
                assert out.count(b"\n") == args.entries + 1

            one_page()
            ls()
            med = statistics.median
            page_ms = med([timed(one_page) for _ in range(args.list_rounds)]) * 1000
            pages_ms = med([timed(all_pages) for _ in range(max(3, args.list_rounds // 3))]) * 1000
            ls_ms = med([timed(ls) for _ in range(args.list_rounds)]) * 1000
            rss_end, hwm_end = service.memory()
        finally:
            with_errors = []
            try:
                ssh(control, ["rm", "-r", "-f", "--", work])
            except subprocess.CalledProcessError as exc:
                with_errors.append(exc)
            close_master("alpha", "alice", control)
            if os.path.exists(local):
                os.remove(local)

    def rate(seconds: float, n: int = size) -> float:
        return n / MiB / seconds

    print("File API vs OpenSSH, alice on alpha, loopback, 2 cores (pserve/waitress, 4 threads)")
    print(f"{args.size_mib} MiB, best of {args.rounds}                 MiB/s     ratio API/OpenSSH")
    print(f"  upload   API PUT /files/content      {rate(api_put):8.1f}")
    print(f"  upload   API POST /files/upload      {rate(api_multipart):8.1f}")
    print(
        f"  upload   OpenSSH sftp put            {rate(sftp_put):8.1f}     PUT {sftp_put / api_put:5.2f}  "
        f"multipart {sftp_put / api_multipart:5.2f}"
    )
    print(
        f"  upload   OpenSSH scp                 {rate(scp_put):8.1f}     PUT {scp_put / api_put:5.2f}  "
        f"multipart {scp_put / api_multipart:5.2f}"
    )
    print(f"  download API GET /files/content      {rate(api_get):8.1f}")
    print(f"  download OpenSSH sftp get            {rate(sftp_get):8.1f}     {sftp_get / api_get:5.2f}")
    print(f"  download OpenSSH scp                 {rate(scp_get):8.1f}     {scp_get / api_get:5.2f}")
    print("the same through Apache mod_wsgi (daemon mode, 16 threads, TLS)")
    print(
        f"  upload   mod_wsgi PUT                {rate(wsgi_put):8.1f}     scp/PUT {scp_put / wsgi_put:5.2f}"
        f"  x waitress {api_put / wsgi_put:5.2f}"
    )
    print(
        f"  upload   mod_wsgi multipart          {rate(wsgi_multipart):8.1f}     scp/multipart "
        f"{scp_put / wsgi_multipart:5.2f}"
    )
    print(
        f"  download mod_wsgi GET                {rate(wsgi_get):8.1f}     scp/GET {scp_get / wsgi_get:5.2f}"
    )
    print(f"listing {args.entries} entries, median                ms")
    print(f"  API GET /files, one page of 1000     {page_ms:8.1f}")
    print(f"  API GET /files, all {args.entries // 1000} pages         {pages_ms:8.1f}")
    print(f"  ssh ls -l (ControlMaster)            {ls_ms:8.1f}")
    print(f"  ratio one page / ls -l               {page_ms / ls_ms:8.2f}")
    print(f"  ratio all pages / ls -l              {pages_ms / ls_ms:8.2f}")
    print(f"service memory around a {args.big_mib} MiB upload ({rate(big_time, big):.1f} MiB/s)")
    print(
        f"  RSS before / peak sampled / after    {rss_before / 1024:6.1f} / {max(peak_rss) / 1024:6.1f} / "
        f"{rss_after / 1024:6.1f} MiB"
    )
    print(f"  VmHWM before / after                 {hwm_before / 1024:6.1f} / {hwm_after / 1024:6.1f} MiB")
    print(f"  VmHWM at the end of the run          {hwm_end / 1024:6.1f} MiB (RSS {rss_end / 1024:.1f})")
    if with_errors:
        print(f"  cleanup failed: {with_errors}")


if __name__ == "__main__":
    main()
