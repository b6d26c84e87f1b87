"""The tests' fault proxy, against an echo server of its own: every mode does what the fault suite
relies on, without the test bed."""

import contextlib
import socket
import threading
import time

import pytest

from tests.faultproxy import FaultProxy


@pytest.fixture
def echo_server():
    """An echo server on a free loopback port; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn):
        # the proxy resets its upstream links on a cut: that is the end of this one, not an error
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept():
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    listener.close()


@pytest.fixture
def proxy(echo_server):
    with FaultProxy("127.0.0.1", echo_server, delay=0.3) as p:
        yield p


def _connect(proxy, timeout=2.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def _echo(sock: socket.socket, data: bytes = b"ping") -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_pass_forwards_both_ways(proxy):
    with _connect(proxy) as sock:
        assert _echo(sock, b"hello" * 10000) == b"hello" * 10000
    assert proxy.accepted == 1


def test_refuse_resets_new_connections_and_keeps_live_ones(proxy):
    with _connect(proxy) as live:
        assert _echo(live) == b"ping"
        proxy.mode = "refuse"
        # a reset (at connect or at the first read), never an answer
        with pytest.raises(ConnectionResetError), _connect(proxy) as refused:
            assert refused.recv(10) == b""
            refused.sendall(b"x")
            refused.recv(10)
        assert _echo(live) == b"ping"


def test_cut_resets_live_connections(proxy):
    with _connect(proxy) as sock:
        assert _echo(sock) == b"ping"
        assert proxy.cut() == 1
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
    # new connections pass again
    with _connect(proxy) as sock:
        assert _echo(sock) == b"ping"


def test_blackhole_forwards_nothing_then_heals(proxy):
    with _connect(proxy, timeout=0.5) as live:
        assert _echo(live) == b"ping"
        proxy.mode = "blackhole"
        live.sendall(b"held")
        with pytest.raises(TimeoutError):
            live.recv(10)
        with _connect(proxy, timeout=0.5) as stranded:
            stranded.sendall(b"lost")
            with pytest.raises(TimeoutError):
                stranded.recv(10)
            proxy.mode = "pass"
            # the connection that arrived in the blackhole never reached the server: reset
            with pytest.raises((ConnectionResetError, TimeoutError)):
                assert stranded.recv(10) == b""
        # what was held on the live link arrives once the link heals, as TCP would retransmit it
        live.settimeout(2)
        assert live.recv(10) == b"held"
        assert _echo(live) == b"ping"


def test_slow_delays_each_chunk(proxy):
    with _connect(proxy) as sock:
        proxy.mode = "slow"
        started = time.monotonic()
        assert _echo(sock) == b"ping"
        # one chunk each way
        assert time.monotonic() - started >= 0.6
        proxy.mode = "pass"
        started = time.monotonic()
        assert _echo(sock) == b"ping"
        assert time.monotonic() - started < 0.3


def test_unknown_mode_is_refused(proxy):
    with pytest.raises(ValueError, match="mode must be one of"):
        proxy.mode = "cut"
