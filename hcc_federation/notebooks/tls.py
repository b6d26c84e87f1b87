"""A notebook's TLS certificate (made with `cryptography`) and the readiness check through an SSH tunnel."""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Certificate:
    cert_pem: bytes
    key_pem: bytes = b""


def make_certificate(name: str, hours: int) -> Certificate:
    """A self-signed P-256 certificate for one notebook, valid a little longer than the notebook lives."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=hours, minutes=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Certificate(cert.public_bytes(serialization.Encoding.PEM), key_pem)


@dataclass(frozen=True)
class ServerAnswer:
    status: int
    body: bytes

    def json(self):
        return json.loads(self.body)


def tls_context(pinned_pem: str | None) -> ssl.SSLContext:
    """Trust exactly the notebook's own certificate when the service made it, else the system's CAs.

    No host name check: the server is reached through a tunnel under whatever name the node has,
    and a pinned self-signed certificate is a stronger check than a name.
    """
    context = ssl.create_default_context(cadata=pinned_pem) if pinned_pem else ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def https_get(
    channel, path: str, token: str, host: str, context: ssl.SSLContext, timeout: float
) -> ServerAnswer:
    """GET ``path`` with the token over TLS on an already connected channel (a paramiko Channel)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=False)
    deadline = time.monotonic() + timeout

    def flush() -> None:
        data = outgoing.read()
        if data:
            channel.sendall(data)

    def feed() -> bool:
        if time.monotonic() > deadline:
            raise TimeoutError("the notebook server did not answer in time")
        data = channel.recv(65536)
        if not data:
            incoming.write_eof()
            return False
        incoming.write(data)
        return True

    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            flush()
            if not feed():
                raise ConnectionError("the server closed the connection during the TLS handshake") from None
    flush()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: token {token}\r\n"
        "Accept: application/json\r\nConnection: close\r\n\r\n"
    )
    tls.write(request.encode())
    flush()
    answer = bytearray()
    while len(answer) < MAX_ANSWER_BYTES:
        try:
            chunk = tls.read(65536)
        except ssl.SSLWantReadError:
            if not feed():
                break
            continue
        except ssl.SSLZeroReturnError:
            break
        if not chunk:
            break
        answer += chunk
    return _parse_http(bytes(answer))


def _parse_http(raw: bytes) -> ServerAnswer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP answer: {status_line[:80]!r}")
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return ServerAnswer(int(parts[1]), body)


def _unchunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";", 1)[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)
