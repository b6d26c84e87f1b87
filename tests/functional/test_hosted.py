"""The service as admins host it: Apache + mod_wsgi in daemon mode over TLS (scripts/testbed/up.sh).

Uploads stream end to end there: the body reaches the cluster as it arrives (no spool), the size cap
acts while it streams, and a client that is cut off leaves no file behind.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.helpers import ContractTestApp, wait_for
from tests.liveproxy import LiveProxy

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def apache(hosting) -> dict:
    return {**hosting["apache"], "tls_ca": hosting["tls_ca"]}


@pytest.fixture(scope="module")
def web(apache) -> ContractTestApp:
    return ContractTestApp(LiveProxy(apache["url"], cafile=apache["tls_ca"]))


@pytest.fixture(scope="module")
def alice(web, users) -> dict:
    body = {"username": "alice", "password": users["alice"]["password"]}
    return {"Authorization": f"Bearer {web.post_json('/api/v1/sessions', body, status=201).json['token']}"}


@pytest.fixture
def target_dir(users):
    """A fresh directory of alice's under /tmp (the clusters' file systems are this host's)."""
    path = Path(f"/tmp/hcc-hosted-{secrets.token_hex(4)}")
    path.mkdir(mode=0o700)
    os.chown(path, users["alice"]["uid"], -1)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def _tls(apache: dict) -> ssl.SSLSocket:
    url = urllib.parse.urlsplit(apache["url"])
    context = ssl.create_default_context(cafile=apache["tls_ca"])
    raw = socket.create_connection((url.hostname, url.port), timeout=30)
    return context.wrap_socket(raw, server_hostname=url.hostname)


def _head(method: str, target: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(sock: ssl.SSLSocket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_apache_mod_wsgi_serves_over_tls_and_passes_the_bearer_token(web, alice):
    me = web.get("/api/v1/me", headers=alice)
    assert me.json["username"] == "alice"  # WSGIPassAuthorization On: else every call is a 401
    assert "mod_wsgi" in me.headers["Server"]


def test_a_host_outside_allowed_hosts_is_refused(web):
    refused = web.get("/api/v1/health", headers={"Host": "evil.example.org"}, status=400)
    assert refused.json["errors"][0]["name"] == "Host"


def test_an_upload_reaches_the_cluster_while_the_client_still_sends(apache, alice, target_dir):
    size = 64 * MiB
    target = f"/api/v1/clusters/alpha/files/content?path={urllib.parse.quote(str(target_dir / 'big.bin'))}"
    with _tls(apache) as sock:
        headers = {**alice, "Content-Type": "application/octet-stream", "Content-Length": str(size)}
        sock.sendall(_head("PUT", target, headers))
        sock.sendall(b"x" * (8 * MiB))

        # no spool: the temporary file on the cluster grows before the body is complete
        def temporary_has_data():
            return [
                p for p in target_dir.iterdir() if p.name.startswith(".hcc-upload-") and p.stat().st_size > 0
            ]

        wait_for(temporary_has_data, timeout=20, interval=0.05)
        sock.sendall(b"x" * (size - 8 * MiB))
        status, _ = _status(sock)
    assert status == 201
    assert _leftovers(target_dir) == ["big.bin"]
    assert (target_dir / "big.bin").stat().st_size == size


def test_the_size_cap_acts_while_the_upload_streams(apache, alice, target_dir):
    cap = 300 * MiB  # hcc.files.max_upload_bytes in the bed's service.ini
    target = f"/api/v1/clusters/alpha/files/content?path={urllib.parse.quote(str(target_dir / 'huge.bin'))}"
    chunk = b"y" * MiB
    biggest = 0
    with _tls(apache) as sock:
        # chunked: no Content-Length that the service could refuse before reading a byte
        headers = {**alice, "Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked"}
        sock.sendall(_head("PUT", target, headers))
        for _ in range(cap // MiB + 32):
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sizes = [p.stat().st_size for p in target_dir.iterdir()]
            biggest = max([biggest, *sizes])
        # Apache's child hands the whole body to the daemon process before it reads the answer
        sock.sendall(b"0\r\n\r\n")
        status, data = _status(sock)
    assert status == 413, data[:500]
    # the service stopped writing at the cap: the cluster never held more than the cap
    assert 0 < biggest <= cap
    wait_for(lambda: _leftovers(target_dir) == [], timeout=20, interval=0.1)


def test_a_client_cut_off_mid_upload_leaves_no_file(apache, alice, target_dir, endpoints):
    size = 64 * MiB
    target = f"/api/v1/clusters/alpha/files/content?path={urllib.parse.quote(str(target_dir / 'cut.bin'))}"
    with _tls(apache) as sock:
        headers = {**alice, "Content-Type": "application/octet-stream", "Content-Length": str(size)}
        sock.sendall(_head("PUT", target, headers))
        sock.sendall(b"z" * (16 * MiB))
        wait_for(lambda: _leftovers(target_dir), timeout=20, interval=0.05)
    # the connection is gone with three quarters of the body unsent
    time.sleep(0.5)
    wait_for(lambda: _leftovers(target_dir) == [], timeout=30, interval=0.2)
    # mod_wsgi's read error is the client's, not a cluster that "failed to store" the file (a 502)
    log = Path(endpoints["state_dir"]) / "log" / "apache2-error.log"
    time.sleep(1)
    failed = [
        line for line in log.read_text().splitlines() if f"{target_dir}/cut.bin" in line and "-> 5" in line
    ]
    assert not failed, failed
