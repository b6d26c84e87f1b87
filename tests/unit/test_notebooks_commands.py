"""The notebook feature's pure parts: validation against the cluster's limits, scripts, parsers, TLS."""

import random
import ssl

import pytest

from hcc_federation.notebooks import commands as c
from hcc_federation.notebooks.errors import InvalidNotebookArgument
from hcc_federation.notebooks.service import StartRequest, validate_start
from hcc_federation.notebooks.tls import _parse_http, make_certificate, tls_context
from hcc_federation.settings import SettingsError, parse_settings
from tests.helpers import BASE_SETTINGS


def cluster(tmp_path, **keys):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    raw = {
        **BASE_SETTINGS,
        "hcc.clusters": "alpha",
        "hcc.cluster.alpha.host": "h",
        "hcc.cluster.alpha.known_hosts": str(kh),
    }
    raw |= {f"hcc.cluster.alpha.{k}": v for k, v in keys.items()}
    return parse_settings(raw, environ={}).clusters[0]


def test_limits_come_from_the_cluster(tmp_path):
    cs = cluster(tmp_path, notebook_modes="batch login", notebook_max_hours="3", notebook_max_cpus="2")
    assert validate_start(StartRequest(), cs).mode == "batch"
    assert validate_start(StartRequest(), cs).hours == 3
    with pytest.raises(InvalidNotebookArgument) as e:
        validate_start(StartRequest(hours=4), cs)
    assert e.value.field == "hours"
    with pytest.raises(InvalidNotebookArgument) as e:
        validate_start(StartRequest(cpus=3), cs)
    assert e.value.field == "cpus"
    with pytest.raises(InvalidNotebookArgument) as e:
        validate_start(StartRequest(mode="login", memory=100), cs)
    assert e.value.field == "memory"
    with pytest.raises(InvalidNotebookArgument) as e:
        validate_start(StartRequest(partition="a b"), cs)
    assert e.value.field == "partition"
    empty = cluster(tmp_path, notebook_modes="")
    with pytest.raises(InvalidNotebookArgument) as e:
        validate_start(StartRequest(), empty)
    assert e.value.field == "cluster"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("notebook_ports", "80-90"),
        ("notebook_ports", "9000"),
        ("notebook_modes", "cloud"),
        ("notebook_url", "ftp://x/{port}"),
        ("notebook_certfile", "/c.pem"),
        ("notebook_job_template", "/no/file"),
        ("notebook_command", "sh -c 'unclosed"),
    ],
)
def test_bad_notebook_settings_name_the_key(tmp_path, key, value):
    with pytest.raises(SettingsError, match=key.split("_", 1)[1]):
        cluster(tmp_path, **{key: value})


def test_the_job_template_gets_command_prefix_and_arguments_quoted():
    script = c.render_job_script(
        c.DEFAULT_JOB_TEMPLATE, "module load jupyter", ["/opt/j s/jupyter-server"], ["--a=$(x)"]
    )
    assert "module load jupyter" in script
    assert "'/opt/j s/jupyter-server' '--a=$(x)'" in script
    assert "@" not in script.replace("$@", "")


def test_the_login_launcher_keeps_the_token_off_argv():
    argv = c.login_start_argv("/h/.hcc-notebooks/x", 8100, "/h/work dir", ["jupyter-server"], ["--x"])
    assert argv[:7] == ["bash", "-s", "--", "/h/.hcc-notebooks/x", "8100", "/h/work dir", "jupyter-server"]
    assert b'JUPYTER_TOKEN="$(cat -- "$folder/token")"' in c.login_start_script("")


def test_parsers():
    assert c.parse_pid("noise\npid 4242\n") == 4242
    assert c.parse_pid("nothing") is None
    assert c.parse_job_id("123\n") == "123" and c.parse_job_id("124;alpha") == "124"
    assert c.parse_job_id("sbatch: error") is None
    assert c.parse_squeue_job("PENDING|Resources\n") == ("PENDING", "Resources")
    assert c.parse_squeue_job("") is None
    assert c.parse_sacct_state("FAILED|3:0\n") == "FAILED"
    assert c.parse_partitions("debug*\nlong\n") == {"debug", "long"}
    assert c.parse_login_status("alive\nlog line\n") == (True, "log line\n")
    assert c.PORT_IN_USE.search("[E] The port 8100 is already in use.")


def test_candidate_ports_put_the_held_ones_last():
    ports = c.candidate_ports(8100, 8109, {8100, 8101}, random.Random(1))
    assert sorted(ports) == list(range(8100, 8110)) and set(ports[-2:]) == {8100, 8101}


def test_url_template():
    assert (
        c.notebook_url("https://p.example.org/{host}/{port}/", "n1", 8100, "t")
        == "https://p.example.org/n1/8100/?token=t"
    )


def _handshake(client_context: ssl.SSLContext, cert, tmp_path) -> None:
    """A TLS handshake in memory between client_context and a server presenting ``cert``."""
    (tmp_path / "c.pem").write_bytes(cert.cert_pem)
    (tmp_path / "k.pem").write_bytes(cert.key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(c_in, c_out)
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        done = 0
        for side in (client, server):
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if done == 2:
            return
    raise AssertionError("no handshake")


def test_the_check_trusts_exactly_the_notebooks_certificate(tmp_path):
    cert = make_certificate("hcc-notebook-x", 2)
    assert b"BEGIN CERTIFICATE" in cert.cert_pem and b"PRIVATE KEY" in cert.key_pem
    _handshake(tls_context(cert.cert_pem.decode()), cert, tmp_path)
    other = make_certificate("hcc-notebook-y", 2)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls_context(cert.cert_pem.decode()), other, tmp_path)


def test_http_answer_parsing():
    answer = _parse_http(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert answer.status == 200 and answer.json() == {}
    with pytest.raises(ConnectionError):
        _parse_http(b"garbage")
