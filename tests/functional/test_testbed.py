"""Smoke tests of the test bed itself: SSH, Slurm, LDAP and MariaDB behave as the service expects."""

import io
import secrets
import shlex
import socket
import time
import uuid
from collections.abc import Callable, Iterator

import ldap3
import MySQLdb
import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.type import namedtype, namedval, tag, univ

CLUSTER_NAMES = ["alpha", "beta"]
PPOLICY_OID = "1.3.6.1.4.1.42.2.27.8.5.1"


# --------------------------------------------------------------------------- SSH helpers
def ssh_connect(cfg: dict, username: str, known_hosts: str | None = None, **auth) -> paramiko.SSHClient:
    """Log in to a cluster's sshd, trusting only the host keys in its known_hosts file."""
    client = paramiko.SSHClient()
    # load() rather than load_host_keys(): the latter remembers the file and could write to it
    client.get_host_keys().load(known_hosts or cfg["known_hosts"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    # Nagle against delayed ACKs costs ~45 ms per small command on loopback (see STYLE.md)
    sock = socket.create_connection((cfg["ssh_host"], cfg["ssh_port"]), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        client.connect(
            cfg["ssh_host"],
            port=cfg["ssh_port"],
            username=username,
            sock=sock,
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
            banner_timeout=10,
            auth_timeout=10,
            **auth,
        )
    except BaseException:
        client.close()
        sock.close()
        raise
    return client


def run(client: paramiko.SSHClient, command: list[str] | str, stdin: str = "", timeout: float = 30):
    """Run a command (an argv list, or a literal shell string); return (exit status, stdout, stderr)."""
    if isinstance(command, list):
        command = shlex.join(command)
    chan_in, out, err = client.exec_command(command, timeout=timeout)
    if stdin:
        chan_in.write(stdin)
    chan_in.channel.shutdown_write()
    stdout, stderr = out.read(1 << 20).decode(), err.read(1 << 20).decode()
    return out.channel.recv_exit_status(), stdout, stderr


def poll(
    fetch: Callable[[], str], done: Callable[[str], bool], timeout: float, interval: float = 0.25
) -> str:
    """Call fetch() until done(result) or the timeout; return the last result either way."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result) or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def sign_user_cert(ca_path: str, principal: str) -> paramiko.Ed25519Key:
    """A fresh ed25519 key with an OpenSSH user certificate for `principal`, valid for a few minutes."""
    with open(ca_path, "rb") as f:
        ca = serialization.load_ssh_private_key(f.read(), password=None)
    key = ed25519.Ed25519PrivateKey.generate()
    now = int(time.time())
    cert = (
        serialization.SSHCertificateBuilder()
        .public_key(key.public_key())
        .serial(secrets.randbits(64))
        .type(serialization.SSHCertificateType.USER)
        .key_id(f"hcc-test-{principal}".encode())
        .valid_principals([principal.encode()])
        # a minute of slack for clock skew between us and sshd
        .valid_after(now - 60)
        .valid_before(now + 300)
        .sign(ca)
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))
    # paramiko takes the certificate as the text of a -cert.pub file
    pkey.load_certificate(cert.public_bytes().decode())
    return pkey


# --------------------------------------------------------------------------- SSH fixtures
@pytest.fixture(scope="module")
def alice_sessions(clusters, users) -> Iterator[dict[str, paramiko.SSHClient]]:
    """alice's password-login connection per cluster, opened once for the module."""
    sessions: dict[str, paramiko.SSHClient] = {}
    for name in CLUSTER_NAMES:
        sessions[name] = ssh_connect(clusters[name], "alice", password=users["alice"]["password"])
    yield sessions
    for client in sessions.values():
        client.close()


@pytest.fixture(params=CLUSTER_NAMES)
def cluster(request, clusters) -> tuple[str, dict]:
    return request.param, clusters[request.param]


@pytest.fixture
def submit(alice_sessions) -> Iterator[Callable[..., str]]:
    """sbatch as alice (script on stdin); every job submitted is cancelled at teardown, whatever happened."""
    submitted: list[tuple[str, str]] = []

    def _submit(cluster_name: str, job_name: str, script: str, *options: str) -> str:
        argv = ["sbatch", "--parsable", "-J", job_name, "-o", "/dev/null", "-t", "2", *options]
        status, out, err = run(alice_sessions[cluster_name], argv, stdin=script)
        assert status == 0, err
        job_id = out.strip().split(";")[0]
        submitted.append((cluster_name, job_id))
        return job_id

    yield _submit
    for cluster_name, job_id in submitted:
        run(alice_sessions[cluster_name], ["scancel", job_id])


# --------------------------------------------------------------------------- SSH logins
def test_password_login(cluster, alice_sessions):
    name, _cfg = cluster
    assert run(alice_sessions[name], ["id", "-un"])[1].strip() == "alice"


def test_public_key_login(cluster, users):
    _name, cfg = cluster
    key = paramiko.Ed25519Key.from_private_key_file(users["alice"]["key"])
    with ssh_connect(cfg, "alice", pkey=key) as client:
        assert run(client, ["id", "-un"])[1].strip() == "alice"


def test_ca_certificate_login(cluster, endpoints):
    _name, cfg = cluster
    key = sign_user_cert(endpoints["ssh_user_ca"]["private_key"], "alice")
    assert key.public_blob.key_type == "ssh-ed25519-cert-v01@openssh.com"
    with ssh_connect(cfg, "alice", pkey=key) as client:
        assert run(client, ["id", "-un"])[1].strip() == "alice"


def test_certificate_for_another_principal_is_refused(cluster, endpoints):
    _name, cfg = cluster
    key = sign_user_cert(endpoints["ssh_user_ca"]["private_key"], "bob")
    with pytest.raises(paramiko.AuthenticationException):
        ssh_connect(cfg, "alice", pkey=key).close()


def test_wrong_host_key_is_refused(cluster, users, tmp_path):
    _name, cfg = cluster
    impostor = ed25519.Ed25519PrivateKey.generate().public_key()
    line = impostor.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{cfg['ssh_host']}]:{cfg['ssh_port']} {line.decode()}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        ssh_connect(cfg, "alice", str(known_hosts), password=users["alice"]["password"]).close()


def test_unknown_host_is_refused(cluster, users, tmp_path):
    _name, cfg = cluster
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    # RejectPolicy raises a plain SSHException (not BadHostKeyException) for a host it does not know
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        ssh_connect(cfg, "alice", str(known_hosts), password=users["alice"]["password"]).close()


def test_session_talks_to_its_own_cluster(cluster, alice_sessions):
    name, cfg = cluster
    client = alice_sessions[name]
    status, out, err = run(client, ["scontrol", "show", "config"])
    assert status == 0, err
    config = dict(
        (key.strip(), value.strip())
        for key, sep, value in (line.partition("=") for line in out.splitlines())
        if sep
    )
    assert config["ClusterName"] == name
    assert config["SLURM_CONF"] == cfg["slurm_conf"]
    assert run(client, "echo $SLURM_CONF")[1].strip() == cfg["slurm_conf"]
    assert run(client, ["sinfo", "-h", "-o", "%N"])[1].strip() == cfg["node"]


# --------------------------------------------------------------------------- Slurm
# a step (srun) so that sstat has something to measure; a little CPU, then idle until cancelled
BURN_SCRIPT = """#!/bin/bash
srun bash -c 'for i in $(seq 200000); do :; done; sleep 120'
"""


def test_job_lifecycle(cluster, alice_sessions, submit):
    name, cfg = cluster
    client = alice_sessions[name]
    job_name = f"hcc-test-{uuid.uuid4().hex[:10]}"
    job_id = submit(name, job_name, BURN_SCRIPT)

    def squeue() -> str:
        return run(client, ["squeue", "-h", "-j", job_id, "-o", "%j|%T|%N"])[1].strip()

    assert squeue().startswith(f"{job_name}|")
    # ~1 s on an idle bed; longer only while other jobs hold the node's two CPUs
    assert poll(squeue, lambda s: "|RUNNING|" in s, timeout=60) == f"{job_name}|RUNNING|{cfg['node']}"

    sstat = ["sstat", "-a", "-n", "-j", job_id, "--parsable2", "-o", "JobID,AveCPU,MaxRSS"]

    def step_row(out: str) -> list[str] | None:
        return next((line.split("|") for line in out.splitlines() if line.startswith(f"{job_id}.0|")), None)

    # the step's first sample comes with the first gather (JobAcctGatherFrequency=task=2): before
    # it, sstat may list the step with an empty MaxRSS and a garbage AveCPU
    out = poll(
        lambda: run(client, sstat)[1],
        lambda s: (row := step_row(s)) is not None and len(row) == 3 and row[2] not in ("", "0"),
        timeout=20,
    )
    step = step_row(out)
    assert step is not None and len(step) == 3 and step[2] not in ("", "0"), out

    status, _out, err = run(client, ["scancel", job_id])
    assert status == 0, err
    # slurmdbd learns of the end a few seconds after slurmctld
    sacct = ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"]
    state = poll(lambda: run(client, sacct)[1].strip(), lambda s: s.startswith("CANCELLED"), timeout=20)
    assert state.startswith("CANCELLED"), state


@pytest.mark.parametrize(("home", "other"), [("alpha", "beta"), ("beta", "alpha")])
def test_job_is_invisible_on_the_other_cluster(home, other, alice_sessions, submit):
    job_name = f"hcc-test-{uuid.uuid4().hex[:10]}"
    # held: it never runs, it only has to exist in the queue
    job_id = submit(home, job_name, "#!/bin/bash\ntrue\n", "--hold")
    # job ids overlap between clusters, so look the job up by its unique name
    by_name = ["squeue", "-h", "-n", job_name, "-o", "%i"]
    assert run(alice_sessions[home], by_name)[1].split() == [job_id]
    status, out, err = run(alice_sessions[other], by_name)
    assert status == 0, err
    assert out.strip() == ""


# --------------------------------------------------------------------------- LDAP
class _PolicyWarning(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType(
            "timeBeforeExpiration",
            univ.Integer().subtype(implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 0)),
        ),
        namedtype.NamedType(
            "graceAuthNsRemaining",
            univ.Integer().subtype(implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 1)),
        ),
    )


class _PolicyError(univ.Enumerated):
    namedValues = namedval.NamedValues(
        ("passwordExpired", 0),
        ("accountLocked", 1),
        ("changeAfterReset", 2),
        ("passwordModNotAllowed", 3),
        ("mustSupplyOldPassword", 4),
        ("insufficientPasswordQuality", 5),
        ("passwordTooShort", 6),
        ("passwordTooYoung", 7),
        ("passwordInHistory", 8),
    )


class PasswordPolicyResponseValue(univ.Sequence):
    """Value of the ppolicy response control (draft-behera-ldap-password-policy-10, section 6.2).

    SEQUENCE { warning [0] CHOICE {...} OPTIONAL, error [1] ENUMERATED {...} OPTIONAL }, in a module
    of IMPLICIT TAGS, except that a CHOICE can only be tagged explicitly. ldap3 returns the control's
    value as raw BER (for carol: 30 03 81 01 01, error [1] = 1 = accountLocked), so we decode it here.
    """

    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType(
            "warning",
            _PolicyWarning().subtype(explicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, 0)),
        ),
        namedtype.OptionalNamedType(
            "error", _PolicyError().subtype(implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 1))
        ),
    )


@pytest.fixture(scope="module")
def ldap_server(endpoints) -> ldap3.Server:
    return ldap3.Server(endpoints["ldap"]["uri"], get_info=ldap3.NONE, connect_timeout=5)


def ldap_bind(server: ldap3.Server, dn: str, password: str, controls=None) -> tuple[ldap3.Connection, bool]:
    conn = ldap3.Connection(server, user=dn, password=password, raise_exceptions=False, receive_timeout=10)
    conn.open()
    return conn, conn.bind(controls=controls)


def test_ldap_user_binds_with_her_password(ldap_server, users):
    conn, ok = ldap_bind(ldap_server, users["alice"]["dn"], users["alice"]["password"])
    assert ok, conn.result
    assert conn.extend.standard.who_am_i() == f"dn:{users['alice']['dn']}"
    conn.unbind()


def test_ldap_wrong_password_fails(ldap_server, users):
    conn, ok = ldap_bind(ldap_server, users["alice"]["dn"], "not-alices-password")
    assert not ok
    assert conn.result["description"] == "invalidCredentials"
    conn.unbind()


def test_ldap_locked_account_is_reported_by_ppolicy(ldap_server, users):
    carol = users["carol"]
    conn, ok = ldap_bind(ldap_server, carol["dn"], carol["password"], controls=[(PPOLICY_OID, False, None)])
    conn.unbind()
    assert not ok
    # ppolicy hides the reason from the result code (still invalidCredentials), only the control tells
    assert conn.result["description"] == "invalidCredentials"
    raw = conn.result["controls"][PPOLICY_OID]["value"]
    value, rest = ber_decoder.decode(raw, asn1Spec=PasswordPolicyResponseValue())
    assert rest == b""
    assert value["error"].prettyPrint() == "accountLocked"


def test_ldap_service_account_searches_people_but_not_passwords(ldap_server, endpoints, users):
    ldap = endpoints["ldap"]
    conn, ok = ldap_bind(ldap_server, ldap["bind_dn"], ldap["bind_password"])
    assert ok, conn.result
    conn.search(ldap["people"], "(objectClass=posixAccount)", attributes=["uid", "userPassword"])
    found = {str(entry.uid): entry for entry in conn.entries}
    conn.unbind()
    assert set(users) <= set(found)
    assert all(not entry.userPassword.values for entry in found.values())
    # the password is there, the ACL hides it: the directory manager still reads it
    admin, ok = ldap_bind(ldap_server, ldap["admin_dn"], ldap["admin_password"])
    assert ok, admin.result
    admin.search(users["alice"]["dn"], "(objectClass=*)", ldap3.BASE, attributes=["userPassword"])
    assert admin.entries[0].userPassword.values
    admin.unbind()


# --------------------------------------------------------------------------- MariaDB
def test_mariadb_service_user_connects_with_utf8mb4(endpoints):
    db = endpoints["mysql"]
    conn = MySQLdb.connect(
        host=db["host"],
        port=db["port"],
        user=db["user"],
        password=db["password"],
        database=db["database"],
        connect_timeout=5,
    )
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT @@character_set_server")
        assert cursor.fetchone() == ("utf8mb4",)
    finally:
        conn.close()
