"""Command lines built from argv, endpoint validation and the typed remote errors."""

import copy
import pickle
import shlex
from dataclasses import FrozenInstanceError

import pytest

from hcc_federation.api.error_map import mapping_for
from hcc_federation.errors import DomainError
from hcc_federation.remote import (
    ClusterEndpoint,
    ClusterUnreachable,
    CredentialsRefused,
    HostKeyRejected,
    OutputTooLarge,
    RemoteError,
    RemoteTimeout,
)

KH = "/nonexistent/known_hosts"
NASTY = ["printf", "%s\\0", "a b", "'q\"", "$(id)", "; touch /tmp/x", "`id`", "line1\nline2", ""]


def endpoint(**kwargs) -> ClusterEndpoint:
    return ClusterEndpoint("alpha", "login.example.org", known_hosts=KH, **kwargs)


def test_plain_command_line_is_exactly_shlex_join():
    assert endpoint().command_line(NASTY) == shlex.join(NASTY)
    # and a POSIX shell splits it back into the same words
    assert shlex.split(endpoint().command_line(NASTY)) == NASTY


def test_env_is_passed_through_env_in_argv():
    ep = endpoint(env={"SLURM_CONF": "/etc/slurm/a b.conf", "LANG": "C.UTF-8"})
    line = ep.command_line(["squeue", "--json"])
    assert shlex.split(line) == ["env", "SLURM_CONF=/etc/slurm/a b.conf", "LANG=C.UTF-8", "squeue", "--json"]


def test_prefix_runs_before_the_quoted_command():
    ep = endpoint(command_prefix="module load slurm")
    assert ep.command_line(["sbatch", "a;b"]) == "module load slurm && exec sbatch 'a;b'"


@pytest.mark.parametrize("argv", [["echo", "a\0b"], ["\0"]])
def test_nul_in_argv_is_refused(argv):
    with pytest.raises(ValueError, match="NUL"):
        endpoint().command_line(argv)


def test_empty_argv_is_refused():
    with pytest.raises(ValueError):
        endpoint().command_line([])


def test_non_string_arguments_are_refused():
    with pytest.raises(TypeError):
        endpoint().command_line(["echo", 3])


@pytest.mark.parametrize("argv0", ["A=B", "-i"])
def test_command_that_env_would_misread_is_refused(argv0):
    with pytest.raises(ValueError):
        endpoint(env={"X": "1"}).command_line([argv0])


@pytest.mark.parametrize("name", ["", "1X", "A-B", "A B", "A=B", "$(id)"])
def test_bad_env_names_stop_construction(name):
    with pytest.raises(ValueError):
        endpoint(env={name: "v"})


@pytest.mark.parametrize(
    "kwargs",
    [{"port": 0}, {"port": 70000}, {"connect_timeout": 0}, {"command_timeout": -1}, {"max_sessions": 0}],
)
def test_bad_limits_stop_construction(kwargs):
    with pytest.raises(ValueError):
        endpoint(**kwargs)


def test_known_hosts_is_required():
    with pytest.raises(TypeError):
        ClusterEndpoint("alpha", "login.example.org")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="known_hosts"):
        ClusterEndpoint("alpha", "login.example.org", known_hosts="")


def test_host_key_name_follows_known_hosts_syntax():
    assert endpoint().host_key_name == "login.example.org"
    assert endpoint(port=2222).host_key_name == "[login.example.org]:2222"


def test_endpoint_is_immutable_including_env():
    ep = endpoint(env={"A": "1"})
    with pytest.raises(FrozenInstanceError):
        ep.port = 23  # type: ignore[misc]
    with pytest.raises(TypeError):
        ep.env["A"] = "2"  # type: ignore[index]
    assert hash(ep) == hash(endpoint(env={"A": "1"}))


def test_defaults_stay_below_sshd_limits():
    ep = endpoint()
    assert ep.port == 22
    assert ep.max_sessions < 10
    assert ep.output_limit == 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ClusterUnreachable, 503),
        (HostKeyRejected, 503),
        (CredentialsRefused, 403),
        (RemoteTimeout, 504),
        (OutputTooLarge, 502),
    ],
)
def test_errors_carry_status_and_name_the_cluster(error, status):
    exc = error("beta", "something happened")
    assert isinstance(exc, RemoteError)
    assert isinstance(exc, DomainError)
    assert mapping_for(exc).status == status
    assert mapping_for(exc).location == "path"
    assert exc.cluster == "beta"
    assert exc.field == "cluster"
    assert "beta" in exc.description
    assert "something happened" in exc.description


def test_errors_survive_copy_and_pickle():
    exc = HostKeyRejected("alpha", "unknown host key SHA256:abc", fingerprint="SHA256:abc")
    # the bytes are our own, just made
    for clone in (copy.copy(exc), pickle.loads(pickle.dumps(exc))):  # noqa: S301
        assert type(clone) is HostKeyRejected
        assert (clone.cluster, clone.detail, clone.fingerprint) == ("alpha", exc.detail, "SHA256:abc")
        assert clone.description == exc.description
        assert str(clone) == str(exc)
