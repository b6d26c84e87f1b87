"""A cluster's sshd goes away and comes back: the pool reports it, serves the other cluster, and heals."""

import time

import pytest

from hcc_federation.api.error_map import mapping_for
from hcc_federation.remote import ClusterEndpoint, ClusterUnreachable, ConnectionPool, PasswordIdentity
from tests.helpers import run_testbed_up, stop_testbed_daemon


def _endpoint(clusters, name: str) -> ClusterEndpoint:
    c = clusters[name]
    return ClusterEndpoint(
        name, c["ssh_host"], c["ssh_port"], known_hosts=c["known_hosts"], command_timeout=20
    )


def test_beta_outage_is_reported_and_the_same_pool_heals(clusters, users):
    alpha, beta = _endpoint(clusters, "alpha"), _endpoint(clusters, "beta")
    alice = PasswordIdentity("alice", users["alice"]["password"])
    bob = PasswordIdentity("bob", users["bob"]["password"])
    pidfile = clusters["beta"]["sshd_pidfile"]

    with ConnectionPool() as pool:
        assert pool.run(alpha, alice, ["true"]).ok
        assert pool.run(beta, alice, ["true"]).ok

        # Other helpers share beta: keep the outage to the few checks below.
        stop_testbed_daemon(pidfile, "/usr/sbin/sshd")
        try:
            # bob has no transport to beta yet: he needs the daemon that is gone
            with pytest.raises(ClusterUnreachable) as caught:
                pool.run(beta, bob, ["true"])
            assert mapping_for(caught.value).status == 503
            assert caught.value.cluster == "beta"
            assert pool.probe(beta).status == "down"
            # the other cluster is unaffected, through the same pool
            assert pool.run(alpha, bob, ["id", "-un"]).text() == "bob\n"
            # an established session outlives sshd's listener (OpenSSH forks one process per
            # connection): alice's pooled transport still works
            assert pool.run(beta, alice, ["true"]).ok
        finally:
            run_testbed_up()

        started = time.monotonic()
        result = pool.run(beta, bob, ["printenv", "TESTBED_CLUSTER"])
        assert result.text() == "beta\n"
        assert time.monotonic() - started < 5
        stats = pool.stats()
        assert stats["connect_failures"] == 1
        # alpha/alice, beta/alice, alpha/bob, beta/bob after the restart
        assert stats["connects"] == 4
        assert stats["channels_in_use"] == 0
