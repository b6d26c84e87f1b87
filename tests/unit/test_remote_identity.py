"""Certificates the service signs for a session, the CA key loader and what identities reveal."""

import os
import time
from datetime import timedelta

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization.ssh import (
    SSHCertificate,
    SSHCertificateType,
    load_ssh_public_identity,
)

from hcc_federation.remote import (
    CertificateIdentity,
    PasswordIdentity,
    load_ca_key,
    make_certificate_identity,
)


@pytest.fixture(scope="module")
def ca_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def _write_ca(path, key, mode: int) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    os.chmod(path, mode)


def test_certificate_names_only_the_user_and_is_valid_now(ca_key):
    before = int(time.time())
    identity = make_certificate_identity(ca_key, "alice", timedelta(minutes=5), key_id="hcc-federation:req-1")
    after = int(time.time())

    cert = load_ssh_public_identity(identity.certificate.encode())
    assert isinstance(cert, SSHCertificate)
    assert cert.type is SSHCertificateType.USER
    assert cert.valid_principals == [b"alice"]
    assert cert.key_id == b"hcc-federation:req-1"
    # a minute of slack for clusters whose clock runs behind, and no more than asked for after now
    assert before - 61 <= cert.valid_after <= after - 59
    assert before + 299 <= cert.valid_before <= after + 300
    assert b"permit-pty" in cert.extensions
    assert b"permit-port-forwarding" in cert.extensions
    assert cert.critical_options == {}
    # signed by our CA, and the signature holds
    cert.verify_cert_signature()
    assert cert.signature_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ) == ca_key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


def test_certificate_is_for_the_private_key_that_comes_with_it(ca_key):
    identity = make_certificate_identity(ca_key, "bob", timedelta(minutes=1), key_id="t")
    private = serialization.load_ssh_private_key(identity.private_key_openssh, password=None)
    cert = load_ssh_public_identity(identity.certificate.encode())
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert private.public_key().public_bytes(*raw) == cert.public_key().public_bytes(*raw)
    # and paramiko takes the pair as a certificate-carrying key
    key = identity.paramiko_key()
    assert isinstance(key, paramiko.Ed25519Key)
    assert key.public_blob is not None
    assert key.public_blob.key_type == "ssh-ed25519-cert-v01@openssh.com"


def test_each_identity_gets_its_own_key_pair(ca_key):
    one = make_certificate_identity(ca_key, "alice", timedelta(minutes=1), key_id="t")
    two = make_certificate_identity(ca_key, "alice", timedelta(minutes=1), key_id="t")
    assert one.private_key_openssh != two.private_key_openssh
    assert load_ssh_public_identity(one.certificate.encode()).serial != (
        load_ssh_public_identity(two.certificate.encode()).serial
    )


@pytest.mark.parametrize("valid_for", [timedelta(0), timedelta(seconds=-5)])
def test_certificate_needs_a_positive_lifetime(ca_key, valid_for):
    with pytest.raises(ValueError, match="valid_for"):
        make_certificate_identity(ca_key, "alice", valid_for, key_id="t")


def test_repr_hides_secrets(ca_key):
    password = PasswordIdentity("alice", "s3cret-pw")
    assert "s3cret-pw" not in repr(password)
    assert "alice" in repr(password)
    cert = make_certificate_identity(ca_key, "alice", timedelta(minutes=1), key_id="t")
    assert "PRIVATE" not in repr(cert)
    assert cert.certificate.split()[1] not in repr(cert)
    assert repr(cert) == "CertificateIdentity(username='alice')"


def test_identities_need_a_username():
    with pytest.raises(ValueError):
        PasswordIdentity("", "pw")
    with pytest.raises(ValueError):
        CertificateIdentity("", b"", "")


def test_load_ca_key_reads_a_private_file(tmp_path, ca_key):
    path = tmp_path / "user_ca"
    _write_ca(path, ca_key, 0o600)
    loaded = load_ca_key(path)
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert loaded.public_key().public_bytes(*raw) == ca_key.public_key().public_bytes(*raw)
    # and the loaded key signs certificates
    make_certificate_identity(loaded, "alice", timedelta(minutes=1), key_id="t")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o700 | 0o010])
def test_load_ca_key_refuses_a_file_others_can_read(tmp_path, ca_key, mode):
    path = tmp_path / "user_ca"
    _write_ca(path, ca_key, mode)
    with pytest.raises(ValueError, match=str(path)):
        load_ca_key(path)


def test_load_ca_key_refuses_a_directory(tmp_path):
    os.chmod(tmp_path, 0o700)
    with pytest.raises((ValueError, IsADirectoryError)):
        load_ca_key(tmp_path)
