"""Who the pool logs in as: a user's password, or a one-session key pair with a CA-signed certificate."""

import io
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization.ssh import (
    SSHCertificateBuilder,
    SSHCertificateType,
    SSHCertPrivateKeyTypes,
)

from hcc_federation.remote.errors import ClusterUnreachable, CredentialsRefused, RemoteTimeout

log = logging.getLogger(__name__)

# the key types SSHCertificateBuilder.sign accepts
_SIGNING_KEY_TYPES = (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)

# Tolerated clock difference between this host and the clusters' sshd when a certificate starts.
CLOCK_SKEW = timedelta(seconds=60)

# What `ssh-keygen -s` grants unless told otherwise. permit-port-forwarding will matter to the planned
# notebooks (not there yet): sshd refuses direct-tcpip channels to certificates without it.
DEFAULT_EXTENSIONS = (
    b"permit-X11-forwarding",
    b"permit-agent-forwarding",
    b"permit-port-forwarding",
    b"permit-pty",
    b"permit-user-rc",
)


class Identity(Protocol):
    """Anything that can authenticate a started paramiko client Transport as ``username``."""

    username: str

    def authenticate(self, transport: paramiko.Transport, cluster: str) -> None: ...


def _authenticate(cluster: str, username: str, attempt: Callable[[], object]) -> None:
    """Run one paramiko auth call, turning its failures into our typed errors."""
    try:
        attempt()
    except paramiko.AuthenticationException as exc:
        # paramiko raises the same class for a refusal, a timeout and a transport that went away
        message = str(exc)
        if "timeout" in message.lower():
            raise RemoteTimeout(cluster, "authentication timed out") from None
        if "transport shut down" in message or "EOF" in message:
            raise ClusterUnreachable(cluster, "the connection closed during authentication") from None
        log.info("cluster %s refused the credentials of %s", cluster, username)
        raise CredentialsRefused(cluster, f"the cluster refused the credentials of {username!r}") from None
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise ClusterUnreachable(cluster, f"authentication failed: {type(exc).__name__}") from None


@dataclass(frozen=True)
class PasswordIdentity:
    """A user's login and password (the password never appears in repr or logs)."""

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.username:
            raise ValueError("empty username")

    def authenticate(self, transport: paramiko.Transport, cluster: str) -> None:
        """Log ``transport`` in with the password; CredentialsRefused if the cluster says no."""
        _authenticate(
            cluster,
            self.username,
            lambda: transport.auth_password(self.username, self.password, fallback=False),
        )


@dataclass(frozen=True)
class CertificateIdentity:
    """An ed25519 key pair made for one session and the OpenSSH user certificate signed for it."""

    username: str
    private_key_openssh: bytes = field(repr=False)
    certificate: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.username:
            raise ValueError("empty username")

    def paramiko_key(self) -> paramiko.Ed25519Key:
        """The private key with the certificate attached, as paramiko offers it to sshd."""
        key = paramiko.Ed25519Key.from_private_key(io.StringIO(self.private_key_openssh.decode("ascii")))
        key.load_certificate(self.certificate)
        return key

    def authenticate(self, transport: paramiko.Transport, cluster: str) -> None:
        """Log ``transport`` in with the certificate; CredentialsRefused if the cluster says no."""
        key = self.paramiko_key()
        _authenticate(cluster, self.username, lambda: transport.auth_publickey(self.username, key))


def make_certificate_identity(
    ca_private_key: SSHCertPrivateKeyTypes,
    username: str,
    valid_for: timedelta,
    key_id: str,
    *,
    extensions: tuple[bytes, ...] = DEFAULT_EXTENSIONS,
    force_command: str | None = None,
) -> CertificateIdentity:
    """Make a fresh ed25519 key pair and sign a user certificate for it, valid for ``username`` only.

    The certificate starts ``CLOCK_SKEW`` in the past so that a cluster whose clock runs behind still
    accepts it, and ends ``valid_for`` from now. ``key_id`` shows up in sshd's log, so make it name the
    service and the request. ``force_command`` (a critical option) makes sshd run that command whatever
    the client asks, for a certificate made for one job (a push between clusters) that must be good for
    nothing else.
    """
    if not username:
        raise ValueError("empty username")
    if valid_for <= timedelta(0):
        raise ValueError("valid_for must be positive")
    now = time.time()
    user_key = ed25519.Ed25519PrivateKey.generate()
    builder = (
        SSHCertificateBuilder()
        .public_key(user_key.public_key())
        .serial(secrets.randbits(64))
        .type(SSHCertificateType.USER)
        .key_id(key_id.encode())
        .valid_principals([username.encode()])
        .valid_after(int(now - CLOCK_SKEW.total_seconds()))
        .valid_before(int(now + valid_for.total_seconds()))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, b"")
    if force_command is not None:
        # cryptography wraps the value in the inner SSH string that PROTOCOL.certkeys asks for
        builder = builder.add_critical_option(b"force-command", force_command.encode())
    certificate = builder.sign(ca_private_key)
    private_key = user_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    return CertificateIdentity(
        username=username,
        private_key_openssh=private_key,
        certificate=certificate.public_bytes().decode("ascii"),
    )


def load_ca_key(path: str | os.PathLike[str], password: bytes | None = None) -> SSHCertPrivateKeyTypes:
    """Load the user CA's OpenSSH private key, refusing a file that group or others can read.

    Whoever can read this key can log in as anyone on every cluster that trusts it.
    """
    with open(path, "rb") as handle:
        # fstat the open file, not the path: nothing can swap the file between the check and the read
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"CA key {os.fspath(path)!r} is not a regular file")
        if mode & 0o077:
            raise ValueError(
                f"CA key {os.fspath(path)!r} is accessible by group or others "
                f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it"
            )
        data = handle.read()
    key = serialization.load_ssh_private_key(data, password=password)
    if not isinstance(key, _SIGNING_KEY_TYPES):
        raise ValueError(f"CA key {os.fspath(path)!r} cannot sign SSH certificates ({type(key).__name__})")
    return key
