"""The SSH connection pool against the test bed's two real sshds (alpha and beta)."""

import dataclasses
import os
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from hcc_federation import files
from hcc_federation.api.error_map import mapping_for
from hcc_federation.remote import (
    ClusterEndpoint,
    ClusterUnreachable,
    ConnectionPool,
    CredentialsRefused,
    HostKeyRejected,
    OutputTooLarge,
    PasswordIdentity,
    RemoteTimeout,
    load_ca_key,
    make_certificate_identity,
)
from hcc_federation.remote.paramiko_compat import read_directory
from hcc_federation.remote.pool import fingerprint, nested_reserve

CLUSTERS = ["alpha", "beta"]


@pytest.fixture(scope="module")
def endpoint_for(clusters):
    def make(name: str, **overrides) -> ClusterEndpoint:
        c = clusters[name]
        return ClusterEndpoint(
            name, c["ssh_host"], c["ssh_port"], known_hosts=c["known_hosts"], command_timeout=20, **overrides
        )

    return make


@pytest.fixture(scope="module")
def alpha(endpoint_for) -> ClusterEndpoint:
    return endpoint_for("alpha")


@pytest.fixture(scope="module")
def ca_key(endpoints):
    return load_ca_key(endpoints["ssh_user_ca"]["private_key"])


@pytest.fixture(scope="module")
def alice(users) -> PasswordIdentity:
    return PasswordIdentity("alice", users["alice"]["password"])


@pytest.fixture(scope="module")
def bob(users) -> PasswordIdentity:
    return PasswordIdentity("bob", users["bob"]["password"])


@pytest.fixture
def pool():
    with ConnectionPool() as p:
        yield p


@pytest.fixture(scope="module")
def shared_pool():
    """One warm pool for the tests that only need a working connection."""
    with ConnectionPool() as p:
        yield p


def _other_host_key_line(endpoint: ClusterEndpoint) -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    blob = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{endpoint.host_key_name} {blob}\n"


def _real_fingerprint(endpoint: ClusterEndpoint) -> str:
    return fingerprint(paramiko.HostKeys(endpoint.known_hosts).lookup(endpoint.host_key_name)["ssh-ed25519"])


# ---------------------------------------------------------------------------- logging in, reuse


@pytest.mark.parametrize("cluster", CLUSTERS)
@pytest.mark.parametrize("kind", ["password", "certificate"])
def test_login_runs_as_the_user_on_that_cluster_and_reuses_the_transport(
    pool, endpoint_for, users, ca_key, cluster, kind
):
    endpoint = endpoint_for(cluster)
    if kind == "password":
        identity = PasswordIdentity("bob", users["bob"]["password"])
    else:
        identity = make_certificate_identity(
            ca_key, "bob", timedelta(minutes=5), key_id=f"test-{uuid.uuid4()}"
        )

    first = pool.run(endpoint, identity, ["id", "-un"])
    assert first.ok, first.error_text()
    assert first.text() == "bob\n"
    # sshd's SetEnv proves we reached this cluster's login node, not the other one
    second = pool.run(endpoint, identity, ["printenv", "TESTBED_CLUSTER"])
    assert second.text().strip() == cluster

    stats = pool.stats()
    assert stats["connects"] == 1
    assert stats["reuses"] == 1
    assert stats["open_transports"] == 1
    assert stats["channels_in_use"] == 0


def test_users_and_clusters_get_separate_transports(pool, endpoint_for, alice, bob):
    for cluster in CLUSTERS:
        for identity in (alice, bob):
            assert pool.run(endpoint_for(cluster), identity, ["id", "-un"]).text() == f"{identity.username}\n"
    assert pool.stats()["connects"] == 4
    assert pool.stats()["open_transports"] == 4


@pytest.mark.parametrize("per_user", [1, 3])
def test_twenty_concurrent_first_requests_make_one_connection(pool, alpha, alice, per_user):
    # they all queue for the one connect; none opens another while it runs (it is not busy yet)
    pool.connections_per_user = per_user
    barrier = threading.Barrier(20)

    def call(i: int) -> str:
        barrier.wait()
        return pool.run(alpha, alice, ["echo", str(i)]).text()

    with ThreadPoolExecutor(20) as executor:
        outputs = list(executor.map(call, range(20)))
    assert outputs == [f"{i}\n" for i in range(20)]
    stats = pool.stats()
    if per_user == 1:
        assert stats["connects"] == 1
    else:
        # a thread that a loaded machine held back until the connect was done may join another
        assert 1 <= stats["connects"] <= per_user
    assert stats["connects"] - stats["joins"] == 1
    assert stats["reuses"] == 20 - stats["connects"]
    assert stats["channels_in_use"] == 0


@pytest.mark.parametrize("per_user", [1, 2, 3])
def test_fifteen_concurrent_commands_share_one_transport_within_max_sessions(pool, alpha, alice, per_user):
    pool.connections_per_user = per_user
    pool.run(alpha, alice, ["true"])  # connect first, so that every command below reuses
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, pool.stats()["channels_in_use"])
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(15) as executor:
            results = list(
                executor.map(
                    lambda i: pool.run(alpha, alice, ["sh", "-c", f"sleep 0.3; echo {i}"]), range(15)
                )
            )
    finally:
        done.set()
        watcher.join()
    assert [r.text() for r in results] == [f"{i}\n" for i in range(15)]
    stats = pool.stats()
    if per_user == 1:
        assert stats["connects"] == 1
        # the 9th..15th waited for a slot rather than failing with "open failed" at sshd's MaxSessions
        assert 1 < peak <= alpha.max_sessions
    else:
        # 15 commands fill the first connection's queue (6 slots of 8): others joined it, up to the
        # limit; the ones past every queue waited for a slot, none failed at sshd's MaxSessions
        assert 2 <= stats["connects"] == pool.transports_of("alpha", "alice") <= per_user
        assert stats["joins"] == stats["connects"] - 1
        assert 1 < peak <= per_user * alpha.max_sessions
    assert stats["channels_in_use"] == 0


def _burst(pool, endpoint, identity, calls: int, seconds: float = 0.3) -> list[str]:
    """``calls`` commands of ``seconds`` each, all at once; their outputs."""
    together = threading.Barrier(calls)

    def call(i: int) -> str:
        together.wait(timeout=10)
        return pool.run(endpoint, identity, ["sh", "-c", f"sleep {seconds}; echo {i}"]).text()

    with ThreadPoolExecutor(calls) as executor:
        return list(executor.map(call, range(calls)))


def _hold_channels(pool, endpoint, identity, count: int) -> set[paramiko.Transport]:
    """The transports that ``count`` commands held open at the same time ran on."""
    inside = threading.Barrier(count + 1)
    release = threading.Event()

    def hold(_: int) -> paramiko.Transport:
        with pool.exec_channel(endpoint, identity, ["sleep", "5"]) as channel:
            inside.wait(timeout=10)
            release.wait(timeout=10)
            return channel.get_transport()

    with ThreadPoolExecutor(count) as executor:
        futures = [executor.submit(hold, i) for i in range(count)]
        inside.wait(timeout=10)
        release.set()
        return {f.result() for f in futures}


def test_quiet_use_stays_on_one_connection(pool, alpha, alice):
    # one command after another, then fewer at once than a connection's queue holds (6 of 8)
    for i in range(10):
        assert pool.run(alpha, alice, ["echo", str(i)]).text() == f"{i}\n"
    assert _burst(pool, alpha, alice, 5) == [f"{i}\n" for i in range(5)]
    assert len(_hold_channels(pool, alpha, alice, 6)) == 1
    stats = pool.stats()
    assert (stats["connects"], stats["joins"], pool.transports_of("alpha", "alice")) == (1, 0, 1)


@pytest.mark.parametrize("per_user", [2, 3])
def test_a_busy_user_is_joined_by_more_connections_never_more_than_the_limit(
    pool, alpha, alice, bob, per_user
):
    pool.connections_per_user = per_user
    pool.run(alpha, alice, ["true"])
    # 40 commands at once: the first connection's 6 queue slots are full, so another joins (one at
    # a time: the commands that come while it connects take its slots, the rest queue); the next
    # burst finds those full too, and joins up to the limit, never past it. The commands past
    # every queue wait for slots, and none fails at sshd's MaxSessions (10 per connection).
    assert _burst(pool, alpha, alice, 40) == [f"{i}\n" for i in range(40)]
    assert 2 <= pool.stats()["connects"] <= per_user
    for _ in range(2):
        assert _burst(pool, alpha, alice, 40) == [f"{i}\n" for i in range(40)]
    stats = pool.stats()
    assert stats["connects"] == per_user == pool.transports_of("alpha", "alice")
    assert stats["joins"] == per_user - 1
    # channels held at once spread over the connections: more than one connection's queue
    assert len(_hold_channels(pool, alpha, alice, 7)) == 2
    assert pool.stats()["connects"] == per_user
    # another user is not affected: one connection of its own
    assert pool.run(alpha, bob, ["id", "-un"]).text() == "bob\n"
    assert pool.transports_of("alpha", "bob") == 1
    assert pool.stats()["channels_in_use"] == 0


def test_one_connection_per_user_keeps_every_command_on_it(pool, alpha, alice):
    pool.connections_per_user = 1
    assert _burst(pool, alpha, alice, 20) == [f"{i}\n" for i in range(20)]
    assert len(_hold_channels(pool, alpha, alice, 6)) == 1
    stats = pool.stats()
    assert (stats["connects"], stats["joins"], pool.transports_of("alpha", "alice")) == (1, 0, 1)


def test_extra_connections_idle_out_back_to_one(alpha, alice):
    with ConnectionPool(idle_timeout=1.0, reaper_interval=0.2) as pool:
        assert pool.run(alpha, alice, ["true"]).ok
        assert len(_hold_channels(pool, alpha, alice, 12)) == 2
        # the first connection stays in use; the extra gets no work below a full queue
        deadline = time.monotonic() + 10
        while pool.transports_of("alpha", "alice") > 1 and time.monotonic() < deadline:
            assert pool.run(alpha, alice, ["true"]).ok
            time.sleep(0.1)
        assert pool.transports_of("alpha", "alice") == 1
        assert pool.stats()["idle_closed"] == 1


def test_a_killed_extra_connection_is_replaced(pool, alpha, alice):
    (first,) = _hold_channels(pool, alpha, alice, 1)
    transports = _hold_channels(pool, alpha, alice, 12)
    assert first in transports and len(transports) == 2
    (extra,) = transports - {first}
    extra.sock.close()  # the network cut it: paramiko notices on its next read
    deadline = time.monotonic() + 5
    while extra.is_active() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.transports_of("alpha", "alice") == 1
    # the next burst gets two live connections again, and every command of it runs
    transports = _hold_channels(pool, alpha, alice, 12)
    assert len(transports) == 2 and extra not in transports
    assert all(t.is_active() for t in transports)
    assert pool.transports_of("alpha", "alice") == 2
    assert pool.stats()["channels_in_use"] == 0


class _RefusedAfterFirstLogin:
    """A person whose password the cluster refuses after the first login (changed meanwhile)."""

    def __init__(self, username: str, password: str) -> None:
        self.username, self.password, self.logins = username, password, 0

    def authenticate(self, transport: paramiko.Transport, cluster: str) -> None:
        self.logins += 1
        password = self.password if self.logins == 1 else "not-the-password"
        PasswordIdentity(self.username, password).authenticate(transport, cluster)


def test_an_extra_connection_that_cannot_log_in_leaves_the_requests_on_the_first(pool, alpha, users):
    identity = _RefusedAfterFirstLogin("alice", users["alice"]["password"])
    # the join is refused: every command still runs, over the first connection, and the next
    # burst does not ask the cluster again at once
    assert _burst(pool, alpha, identity, 15) == [f"{i}\n" for i in range(15)]
    assert _burst(pool, alpha, identity, 15) == [f"{i}\n" for i in range(15)]
    stats = pool.stats()
    assert (stats["connects"], stats["joins"], stats["join_failures"]) == (1, 0, 1)
    assert identity.logins == 2
    assert pool.transports_of("alpha", "alice") == 1


def test_an_extra_connection_checks_the_host_key_too(pool, alpha, alice, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(Path(alpha.known_hosts).read_text())
    endpoint = dataclasses.replace(alpha, known_hosts=str(known_hosts))
    assert pool.run(endpoint, alice, ["true"]).ok
    # the pinned key changes: a joining connection is refused, the requests stay on the first one
    known_hosts.write_text(_other_host_key_line(endpoint))
    assert _burst(pool, endpoint, alice, 15) == [f"{i}\n" for i in range(15)]
    stats = pool.stats()
    assert (stats["connects"], stats["joins"], stats["join_failures"]) == (1, 0, 1)
    assert pool.transports_of("alpha", "alice") == 1


def test_no_extra_connection_past_the_pool_cap(alpha, alice):
    with ConnectionPool(max_connections=1) as pool:
        assert _burst(pool, alpha, alice, 15) == [f"{i}\n" for i in range(15)]
        stats = pool.stats()
        assert (stats["connects"], stats["joins"], stats["open_transports"]) == (1, 0, 1)


def test_threads_that_hold_a_channel_and_open_a_second_one_never_wait_in_a_circle(pool, alpha, alice):
    # every slot of the queue held by a thread that then opens a second channel (a stat inside an
    # open SFTP session): they must all get one from the reserve and finish, not wait for each other
    endpoint = dataclasses.replace(alpha, max_sessions=4, command_timeout=5)
    outer = endpoint.max_sessions - nested_reserve(endpoint.max_sessions)
    pool.run(endpoint, alice, ["true"])
    inside = threading.Barrier(outer)

    def nest(i: int) -> str:
        with pool.open_sftp(endpoint, alice) as sftp:
            sftp.stat("/")
            inside.wait(timeout=5)  # every queue slot is held now
            return pool.run(endpoint, alice, ["echo", str(i)]).text()

    started = time.monotonic()
    with ThreadPoolExecutor(outer) as executor:
        assert list(executor.map(nest, range(outer))) == [f"{i}\n" for i in range(outer)]
    assert time.monotonic() - started < 4
    assert pool.stats()["channels_in_use"] == 0


def test_a_second_channel_that_sshd_refuses_goes_over_a_connection_of_its_own(pool, alpha, alice):
    # max_sessions above the bed sshd's MaxSessions (10): ten threads hold every session sshd
    # allows, each then wants a second channel; sshd refuses them all, and waiting would be circular
    endpoint = dataclasses.replace(alpha, max_sessions=16, command_timeout=5)
    holders = 10
    pool.run(endpoint, alice, ["true"])
    inside = threading.Barrier(holders)

    def nest(i: int) -> str:
        with pool.open_sftp(endpoint, alice) as sftp:
            sftp.stat("/")
            inside.wait(timeout=5)  # sshd's ten sessions are all held now
            return pool.run(endpoint, alice, ["echo", str(i)]).text()

    started = time.monotonic()
    with ThreadPoolExecutor(holders) as executor:
        assert list(executor.map(nest, range(holders))) == [f"{i}\n" for i in range(holders)]
    assert time.monotonic() - started < 4
    assert pool.stats()["overflow_connects"] > 0
    assert pool.stats()["channels_in_use"] == 0


def test_an_sftp_session_is_kept_for_the_next_call_and_starts_in_home(pool, alpha, alice):
    with pool.open_sftp(alpha, alice) as sftp:
        first = sftp
        home = sftp.normalize(".")
        sftp.chdir("/tmp")
    assert pool.stats()["sftp_parked"] == 1
    with pool.open_sftp(alpha, alice) as sftp:
        # the same session, back in the home directory as a new one would be
        assert sftp is first
        assert sftp.normalize(".") == home and sftp.getcwd() is None
    stats = pool.stats()
    assert (stats["sftp_opened"], stats["sftp_reused"], stats["channels_in_use"]) == (1, 1, 0)


def test_an_sftp_session_left_with_a_request_unanswered_is_not_kept(pool, alpha, alice):
    with pytest.raises(RemoteTimeout), pool.open_sftp(alpha, alice, timeout=0.5) as sftp:
        # a request whose answer never comes in time: the session must not serve the next caller
        sftp.get_channel().settimeout(0.0001)
        sftp.listdir("/usr/lib")
    assert pool.stats()["sftp_parked"] == 0
    with pool.open_sftp(alpha, alice) as sftp:
        assert sftp.stat("/").st_mode
    assert pool.stats()["sftp_opened"] == 2


def test_a_listing_leaves_its_sftp_session_fit_to_keep(pool, alpha, alice):
    with pool.open_sftp(alpha, alice) as sftp:
        first = sftp
        listed = files.list_directory(sftp, "/usr/bin", limit=5)
        # a reader stopped after three entries reads what it asked for and closes the handle
        reader = read_directory(sftp, "/usr/lib")
        assert len([next(reader) for _ in range(3)]) == 3
        reader.close()
        assert not sftp._expecting
    assert pool.stats()["sftp_parked"] == 1
    with pool.open_sftp(alpha, alice) as sftp:
        assert sftp is first
        assert files.list_directory(sftp, "/usr/bin", limit=5) == listed
        assert sorted(a.filename for a in read_directory(sftp, "/usr/bin")) == sorted(
            sftp.listdir("/usr/bin")
        )


def test_parked_sftp_sessions_give_their_slots_to_commands(pool, alpha, alice):
    # every queue slot parked by SFTP sessions: commands must still run, at once, not wait them out
    endpoint = dataclasses.replace(alpha, max_sessions=4, command_timeout=5)
    outer = endpoint.max_sessions - nested_reserve(endpoint.max_sessions)
    pool.sftp_sessions = outer
    barrier = threading.Barrier(outer)

    def hold(_: int) -> None:
        with pool.open_sftp(endpoint, alice) as sftp:
            sftp.stat("/")
            barrier.wait(timeout=5)

    with ThreadPoolExecutor(outer) as executor:
        list(executor.map(hold, range(outer)))
    assert pool.stats()["sftp_parked"] == outer
    started = time.monotonic()
    with ThreadPoolExecutor(outer) as executor:
        outputs = list(
            executor.map(lambda i: pool.run(endpoint, alice, ["echo", str(i)]).text(), range(outer))
        )
    assert outputs == [f"{i}\n" for i in range(outer)]
    assert time.monotonic() - started < 2
    assert pool.stats()["sftp_parked"] == 0
    assert pool.stats()["channels_in_use"] == 0


@pytest.mark.parametrize("per_user", [1, 3])
def test_sftp_callers_that_queue_are_handed_kept_sessions_not_new_ones(pool, alpha, alice, per_user):
    # more SFTP callers than slots: each one that waited gets a session another one just finished
    pool.connections_per_user = per_user
    endpoint = dataclasses.replace(alpha, max_sessions=4, command_timeout=10)
    outer = endpoint.max_sessions - nested_reserve(endpoint.max_sessions)
    pool.sftp_sessions = outer

    def work(_: int) -> None:
        with pool.open_sftp(endpoint, alice) as sftp:
            sftp.stat("/")
            time.sleep(0.02)

    with ThreadPoolExecutor(4 * outer) as executor:
        list(executor.map(work, range(8 * outer)))
    stats = pool.stats()
    # sessions are kept per connection: at most a queue's worth on each one the burst made
    assert stats["connects"] <= per_user
    assert stats["sftp_opened"] <= outer * stats["connects"]
    assert stats["sftp_opened"] + stats["sftp_reused"] == 8 * outer
    assert stats["channels_in_use"] == 0


def test_a_parked_sftp_session_goes_with_its_connection(pool, alpha, alice):
    with pool.open_sftp(alpha, alice) as sftp:
        old = sftp
    old.get_channel().get_transport().close()
    with pool.open_sftp(alpha, alice) as sftp:
        assert sftp is not old
        assert sftp.stat("/").st_mode
    assert pool.stats()["reconnects"] == 1


def test_channels_that_close_during_a_rekey_do_not_kill_the_connection(pool, alpha, alice):
    # paramiko re-keys every 512 MiB; its reader thread, answering a channel's CLOSE, waited for the
    # key exchange that only it could finish, and killed the connection after clear_to_send_timeout
    # (3 of 12 downloads of 256 MiB ended short). Here a re-key every 256 KiB and a short timeout.
    pool.run(alpha, alice, ["true"])
    with pool.open_sftp(alpha, alice) as sftp:
        transport = sftp.get_channel().get_transport()
    transport.packetizer.REKEY_BYTES = 256 * 1024
    transport.clear_to_send_timeout = 2
    for _ in range(20):
        assert len(pool.run(alpha, alice, ["head", "-c", "300000", "/dev/zero"]).stdout) == 300000
    assert pool.stats()["reconnects"] == 0
    assert transport.is_active()


def test_the_nested_reserve_leaves_most_slots_to_the_queue():
    assert [nested_reserve(n) for n in (1, 2, 4, 8, 10, 16)] == [0, 1, 1, 2, 2, 4]


def test_idle_transports_are_closed_and_reopened(alpha, alice):
    with ConnectionPool(idle_timeout=0.3, reaper_interval=0.1) as pool:
        assert pool.run(alpha, alice, ["true"]).ok
        assert pool.stats()["open_transports"] == 1
        deadline = time.monotonic() + 5
        while pool.stats()["open_transports"] and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = pool.stats()
        assert stats["open_transports"] == 0
        assert stats["idle_closed"] == 1
        assert pool.run(alpha, alice, ["true"]).ok
        assert pool.stats()["connects"] == 2


def test_busy_transports_still_log_in_again_after_their_lifetime(alpha, alice):
    # used all the time, so never idle: only the lifetime makes the cluster check alice again
    # until two lifetimes have ended: under load one login alone may take longer than the lifetime,
    # so a fixed 1.5 s saw only one (CI, load 10); the deadline only bounds a pool that never retires
    with ConnectionPool(max_lifetime=0.5, reaper_interval=60) as pool:
        deadline = time.monotonic() + 60
        while pool.stats()["retired"] < 2 and time.monotonic() < deadline:
            assert pool.run(alpha, alice, ["true"]).ok
            time.sleep(0.05)
        stats = pool.stats()
        assert stats["retired"] >= 2 and stats["connects"] == stats["retired"] + 1
        assert stats["idle_closed"] == 0


def test_least_recently_used_transport_is_evicted_past_the_cap(alpha, alice, bob):
    with ConnectionPool(max_connections=1) as pool:
        assert pool.run(alpha, alice, ["id", "-un"]).text() == "alice\n"
        assert pool.run(alpha, bob, ["id", "-un"]).text() == "bob\n"
        stats = pool.stats()
        assert (stats["evictions"], stats["open_transports"]) == (1, 1)
        # bob's transport stayed; alice's was the one evicted
        assert pool.run(alpha, bob, ["true"]).ok
        assert pool.stats()["connects"] == 2
        assert pool.run(alpha, alice, ["true"]).ok
        assert pool.stats()["connects"] == 3


def test_a_transport_with_channels_open_is_never_evicted(alpha, alice, bob):
    with ConnectionPool(max_connections=1) as pool:
        with pool.exec_channel(alpha, alice, ["sleep", "1"]) as channel:
            assert pool.run(alpha, bob, ["true"]).ok
            # alice's channel is still usable: her transport was kept over the (soft) cap
            assert channel.recv_exit_status() == 0
            stats = pool.stats()
            assert (stats["evictions"], stats["open_transports"]) == (0, 2)
        # once her channel is given back, the reaper's pass trims the least recently used: bob's
        pool.reap_idle()
        stats = pool.stats()
        assert (stats["evictions"], stats["open_transports"]) == (1, 1)
        assert pool.run(alpha, alice, ["true"]).ok
        assert pool.stats()["connects"] == 2


# ---------------------------------------------------------------------------- host keys, reachability


def test_known_hosts_with_another_key_is_rejected(pool, alpha, alice, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(_other_host_key_line(alpha))
    endpoint = dataclasses.replace(alpha, known_hosts=str(known_hosts))
    with pytest.raises(HostKeyRejected) as caught:
        pool.run(endpoint, alice, ["true"])
    assert mapping_for(caught.value).status == 503
    assert caught.value.fingerprint == _real_fingerprint(alpha)
    assert "differs" in caught.value.description
    assert pool.stats()["open_transports"] == 0


def test_empty_known_hosts_is_rejected(pool, alpha, alice, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    with pytest.raises(HostKeyRejected, match="unknown host key"):
        pool.run(dataclasses.replace(alpha, known_hosts=str(known_hosts)), alice, ["true"])
    assert pool.stats()["connects"] == 0


def test_missing_known_hosts_is_rejected(pool, alpha, alice, tmp_path):
    with pytest.raises(HostKeyRejected, match="known_hosts"):
        pool.run(dataclasses.replace(alpha, known_hosts=str(tmp_path / "absent")), alice, ["true"])


def test_closed_port_is_unreachable(pool, alpha, alice):
    closed = dataclasses.replace(alpha, name="nowhere", host="127.0.0.1", port=1)
    started = time.monotonic()
    with pytest.raises(ClusterUnreachable) as caught:
        pool.run(closed, alice, ["true"])
    assert mapping_for(caught.value).status == 503
    assert caught.value.cluster == "nowhere"
    assert time.monotonic() - started < 2


def test_server_that_never_answers_times_out_once_for_all_waiting_threads(pool, alpha, alice):
    # a listener that accepts TCP but never sends an SSH banner (a hung sshd)
    with socket.create_server(("127.0.0.1", 0)) as silent:
        endpoint = dataclasses.replace(
            alpha, name="silent", port=silent.getsockname()[1], connect_timeout=0.5
        )
        barrier = threading.Barrier(8)

        def call(_: int) -> BaseException | None:
            barrier.wait()
            try:
                pool.run(endpoint, alice, ["true"])
            except RemoteTimeout as exc:
                return exc
            return None

        started = time.monotonic()
        with ThreadPoolExecutor(8) as executor:
            errors = list(executor.map(call, range(8)))
        elapsed = time.monotonic() - started
    assert all(isinstance(e, RemoteTimeout) and e.cluster == "silent" for e in errors)
    assert all(mapping_for(e).status == 504 for e in errors)
    # the seven that queued behind the first attempt shared its failure instead of each waiting
    # out another connect timeout in turn
    assert pool.stats()["connect_failures"] == 1
    assert elapsed < 2


def test_probe_reports_up_down_and_mismatch_without_logging_in(pool, endpoint_for, tmp_path):
    for cluster in CLUSTERS:
        result = pool.probe(endpoint_for(cluster))
        assert result.status == "up", result.detail
        assert result.latency_ms > 0
    alpha = endpoint_for("alpha")
    down = pool.probe(dataclasses.replace(alpha, port=1))
    assert down.status == "down"
    assert "refused" in down.detail
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(_other_host_key_line(alpha))
    mismatch = pool.probe(dataclasses.replace(alpha, known_hosts=str(known_hosts)))
    assert mismatch.status == "hostkey_mismatch"
    assert _real_fingerprint(alpha) in mismatch.detail
    stats = pool.stats()
    assert (stats["connects"], stats["open_transports"]) == (0, 0)


# ---------------------------------------------------------------------------- credentials


def test_wrong_password_is_refused(pool, alpha):
    with pytest.raises(CredentialsRefused) as caught:
        pool.run(alpha, PasswordIdentity("alice", "not-her-password"), ["true"])
    assert mapping_for(caught.value).status == 403
    assert "not-her-password" not in caught.value.description
    assert pool.stats()["open_transports"] == 0


def test_certificate_for_another_principal_is_refused(pool, alpha, ca_key):
    bobs = make_certificate_identity(ca_key, "bob", timedelta(minutes=5), key_id="test-other-principal")
    with pytest.raises(CredentialsRefused):
        pool.run(alpha, dataclasses.replace(bobs, username="alice"), ["true"])


def test_certificate_from_an_untrusted_ca_is_refused(pool, alpha):
    rogue = make_certificate_identity(
        ed25519.Ed25519PrivateKey.generate(), "alice", timedelta(minutes=5), key_id="test-rogue"
    )
    with pytest.raises(CredentialsRefused):
        pool.run(alpha, rogue, ["true"])


# ---------------------------------------------------------------------------- commands


@pytest.mark.parametrize("prefix", ["", "true"])
def test_timeout_abandons_the_command_and_frees_its_slot(shared_pool, endpoint_for, alpha, alice, prefix):
    marker = f"29.{uuid.uuid4().int % 10**9:09d}"  # a sleep argument no other test uses
    # with a command prefix a shell runs first: the command must still be the one stopped
    endpoint = endpoint_for("alpha", command_prefix=prefix)
    started = time.monotonic()
    with pytest.raises(RemoteTimeout) as caught:
        shared_pool.run(endpoint, alice, ["sleep", marker], timeout=1)
    assert mapping_for(caught.value).status == 504
    assert time.monotonic() - started < 2.5
    assert shared_pool.stats()["channels_in_use"] == 0
    # the pool asked sshd to stop it: no orphan sleep is left on the login node
    deadline = time.monotonic() + 3
    while True:
        left = shared_pool.run(alpha, alice, ["pgrep", "-u", "alice", "-f", f"^sleep {marker}$"])
        if left.exit_status == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert left.exit_status == 1, left.text()


def test_output_over_the_cap_is_refused(shared_pool, alpha, alice):
    with pytest.raises(OutputTooLarge) as caught:
        shared_pool.run(alpha, alice, ["head", "-c", "2000000", "/dev/zero"], output_limit=1_000_000)
    assert mapping_for(caught.value).status == 502
    assert shared_pool.stats()["channels_in_use"] == 0
    # the cap counts stdout and stderr together
    with pytest.raises(OutputTooLarge):
        shared_pool.run(
            alpha,
            alice,
            ["sh", "-c", "head -c 600000 /dev/zero; head -c 600000 /dev/zero >&2"],
            output_limit=1_000_000,
        )
    # exactly at the cap is fine
    assert (
        len(shared_pool.run(alpha, alice, ["head", "-c", "1000", "/dev/zero"], output_limit=1000).stdout)
        == 1000
    )


def test_arguments_arrive_literally_and_run_nothing(shared_pool, alpha, alice):
    victim = f"/tmp/hcc-remote-{uuid.uuid4()}"
    args = [
        "a b",
        "'q\"",
        "$(id)",
        f"; touch {victim}",
        "`touch " + victim + "`",
        "line1\nline2",
        "*",
        "~",
        "",
    ]
    result = shared_pool.run(alpha, alice, ["printf", "%s\\0", *args])
    assert result.ok, result.error_text()
    assert result.stdout.split(b"\0")[:-1] == [a.encode() for a in args]
    # the login node is this machine: nothing was created there
    assert not os.path.exists(victim)


def test_nul_in_argv_is_refused_before_connecting(pool, alpha, alice):
    with pytest.raises(ValueError, match="NUL"):
        pool.run(alpha, alice, ["echo", "a\0b"])
    assert pool.stats()["connects"] == 0


def test_exit_status_and_stderr_are_reported(shared_pool, alpha, alice):
    result = shared_pool.run(alpha, alice, ["ls", "--", f"/nonexistent-{uuid.uuid4()}"])
    assert not result.ok
    assert result.exit_status == 2
    assert "No such file" in result.error_text()


@pytest.mark.parametrize("size", [0, 11, 3_000_000])
def test_stdin_round_trip(shared_pool, alpha, alice, size):
    # 3 MB is more than the channel window: stdin has to be written while stdout is read
    data = os.urandom(size)
    result = shared_pool.run(alpha, alice, ["cat"], stdin=data)
    assert result.ok
    assert result.stdout == data


def test_large_stderr_does_not_deadlock(shared_pool, alpha, alice):
    script = "head -c 3000000 /dev/zero >&2; echo done"
    result = shared_pool.run(alpha, alice, ["sh", "-c", script], timeout=10)
    assert result.text() == "done\n"
    assert len(result.stderr) == 3_000_000


def test_env_and_prefix_reach_the_command(shared_pool, endpoint_for, alice):
    endpoint = endpoint_for("beta", env={"HCC_X": "a b $(id)"}, command_prefix="export HCC_Y=from-prefix")
    result = shared_pool.run(endpoint, alice, ["printenv", "HCC_X", "HCC_Y", "TESTBED_CLUSTER"])
    assert result.text() == "a b $(id)\nfrom-prefix\nbeta\n"


def test_slot_wait_is_bounded_by_the_timeout(pool, endpoint_for, alice):
    endpoint = endpoint_for("alpha", max_sessions=1)
    with pool.exec_channel(endpoint, alice, ["sleep", "3"]):
        started = time.monotonic()
        with pytest.raises(RemoteTimeout, match="busy"):
            pool.run(endpoint, alice, ["true"], timeout=0.5)
        assert time.monotonic() - started < 1.5
        assert pool.stats()["channels_in_use"] == 1
    assert pool.stats()["channels_in_use"] == 0
    assert pool.run(endpoint, alice, ["true"]).ok


def test_exec_channel_streams_output(shared_pool, alpha, alice):
    with shared_pool.exec_channel(alpha, alice, ["head", "-c", "5000000", "/dev/zero"]) as channel:
        received = 0
        while chunk := channel.recv(1 << 20):
            received += len(chunk)
        assert channel.recv_exit_status() == 0
    assert received == 5_000_000
    # its stdin is closed: a command that reads it ends instead of hanging
    with shared_pool.exec_channel(alpha, alice, ["cat"], timeout=5) as channel:
        assert channel.recv_exit_status() == 0
    assert shared_pool.stats()["channels_in_use"] == 0


@pytest.mark.parametrize("per_user", [1, 3])
def test_many_short_commands_at_once_keep_the_transport_alive(pool, alpha, alice, per_user):
    # paramiko sends a channel's EOF or data after releasing its lock, so its answer to the
    # server's CLOSE can overtake them and OpenSSH drops the whole connection ("ieof packet
    # referred to nonexistent channel"); fast commands, and commands that exit without reading
    # their stdin, hit that window. This mix broke a shared transport about once in 60 commands.
    pool.connections_per_user = per_user
    data = os.urandom(200_000)

    def call(i: int) -> bool:
        if i % 3 == 0:
            return pool.run(alpha, alice, ["true"], stdin=data).ok
        if i % 3 == 1:
            return pool.run(alpha, alice, ["head", "-c", "1"], stdin=data).stdout == data[:1]
        return pool.run(alpha, alice, ["echo", str(i)]).text() == f"{i}\n"

    with ThreadPoolExecutor(30) as executor:
        assert all(executor.map(call, range(300)))
    stats = pool.stats()
    assert (stats["reconnects"], stats["channels_in_use"]) == (0, 0)
    # every connection made is still alive
    assert stats["connects"] == pool.transports_of("alpha", "alice")
    assert stats["connects"] == 1 if per_user == 1 else 1 <= stats["connects"] <= per_user


def test_sftp_on_the_pooled_transport(pool, alpha, alice):
    name = f"hcc-remote-{uuid.uuid4()}.txt"
    with pool.open_sftp(alpha, alice) as sftp:
        assert pool.stats()["channels_in_use"] == 1
        with sftp.open(name, "w") as handle:
            handle.write(b"hello")
        try:
            assert pool.run(alpha, alice, ["cat", "--", name]).stdout == b"hello"
            assert name in sftp.listdir(".")
        finally:
            sftp.remove(name)
    stats = pool.stats()
    assert (stats["connects"], stats["channels_in_use"]) == (1, 0)


# ---------------------------------------------------------------------------- healing


def test_transport_closed_client_side_is_replaced(pool, alpha, alice):
    with pool.open_sftp(alpha, alice) as sftp:
        sftp.get_channel().get_transport().close()
    result = pool.run(alpha, alice, ["id", "-un"])
    assert result.text() == "alice\n"
    stats = pool.stats()
    assert (stats["connects"], stats["reconnects"], stats["open_transports"]) == (2, 1, 1)


def test_transport_whose_socket_died_is_replaced(pool, alpha, alice):
    with pool.open_sftp(alpha, alice) as sftp:
        transport = sftp.get_channel().get_transport()
    # the socket dies under paramiko, which may not have noticed yet when the next call comes:
    # either the liveness check or the failed channel open must lead to one reconnect
    transport.sock.shutdown(2)
    assert pool.run(alpha, alice, ["id", "-un"]).text() == "alice\n"
    assert pool.stats()["connects"] == 2


def test_pooled_connections_negotiate_aes_gcm(pool, alpha, alice, monkeypatch):
    # AES-GCM costs both ends less than paramiko's default AES-CTR + HMAC-SHA2 (a 256 MiB upload:
    # 0.36-0.44 s of this process's CPU instead of 0.54-0.63 s); the bed's sshd offers both
    with pool.open_sftp(alpha, alice) as sftp:
        transport = sftp.get_channel().get_transport()
    assert (transport.local_cipher, transport.remote_cipher) == ("aes128-gcm@openssh.com",) * 2
    # its packets are padded as CTR's are, without a getrandom call each (0.49 s of a 256 MiB upload)
    calls = []
    real = os.urandom

    def urandom(n: int) -> bytes:
        if sys._getframe(1).f_code.co_name == "_build_packet":  # the padding, not a uuid4 meanwhile
            calls.append(n)
        return real(n)

    monkeypatch.setattr(os, "urandom", urandom)
    assert len(pool.run(alpha, alice, ["head", "-c", "300000", "/dev/zero"]).stdout) == 300000
    with pool.open_sftp(alpha, alice) as sftp, sftp.open("/dev/null", "wb") as sink:
        sink.write(b"x" * 100_000)
    monkeypatch.undo()
    assert calls == []
    # and the re-key of a GCM connection keeps it alive (as test_channels_that_close_during_a_rekey...)
    transport.packetizer.REKEY_BYTES = 256 * 1024
    for _ in range(5):
        assert len(pool.run(alpha, alice, ["head", "-c", "300000", "/dev/zero"]).stdout) == 300000
    assert transport.is_active() and pool.stats()["reconnects"] == 0
