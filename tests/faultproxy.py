"""A TCP proxy of the tests' own that can refuse, cut, blackhole or slow the link to one server.

It stands between the service and a real server of the test bed (a cluster's sshd, MariaDB, slapd),
so a test can break that link while other tests go on using the server itself: nothing here ever
stops or reconfigures a daemon. Threads and sockets only, no dependency; loopback only.

Modes, switchable at any time with ``proxy.mode = ...``:

- ``pass``: forward both ways.
- ``refuse``: new connections are reset at once (a closed port, as the client sees it); live ones go on.
- ``blackhole``: nothing is forwarded either way and new connections get no answer (they are
  accepted, as the kernel would complete the handshake anyway, but never reach the server). Data
  waits in the socket buffers, as TCP retransmits into a silent network; when the mode leaves
  ``blackhole`` the live links flow again and the connections that arrived meanwhile are reset.
- ``slow``: each chunk (at most ``chunk`` bytes) waits ``delay`` seconds before it is forwarded.

``proxy.cut()`` resets every live connection now (RST, not FIN), whatever the mode; new ones follow
the mode.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time

MODES = ("pass", "refuse", "blackhole", "slow")
# how often a waiting pump looks at the mode again: bounds how late a mode change is seen
_POLL = 0.05


def _reset(sock: socket.socket) -> None:
    """Close with RST: SO_LINGER on with a zero timeout drops the connection instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Link:
    """One client connection and, unless it arrived during a blackhole, its upstream connection."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None):
        self.client = client
        self.upstream = upstream
        self.closed = threading.Event()
        self._finished = 0
        self._lock = threading.Lock()

    def half_closed(self) -> None:
        """One direction ended in an orderly way; when both have, the link is done."""
        with self._lock:
            self._finished += 1
            done = self._finished == 2
        if done:
            self.closed.set()
            for sock in (self.client, self.upstream):
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)


class FaultProxy:
    """Listen on 127.0.0.1:<free port> and forward to ``target``; see the module docstring."""

    def __init__(self, target_host: str, target_port: int, *, delay: float = 0.5, chunk: int = 16384):
        self.target = (target_host, target_port)
        self.delay = delay
        self.chunk = chunk
        self._mode = "pass"
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)
        self.host, self.port = self._listener.getsockname()[:2]
        self.accepted = 0
        # chunks forwarded either way: a test can wait until a request's traffic is under way
        self.forwarded = 0

    # ------------------------------------------------------------------ control

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        with self._lock:
            self._mode = mode
            # connections that came in during a blackhole never reached the server: reset them, so
            # their clients fail now and connect again, instead of waiting on a link that never was
            stranded = [link for link in self._links if link.upstream is None] if mode != "blackhole" else []
        for link in stranded:
            link.close()

    def cut(self) -> int:
        """Reset every live connection now; returns how many."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()
        return len(links)

    def live(self) -> int:
        """How many connections are open through the proxy."""
        with self._lock:
            self._links = [link for link in self._links if not link.closed.is_set()]
            return len(self._links)

    def start(self) -> FaultProxy:
        self._spawn(self._accept_forever, "faultproxy-accept")
        return self

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ work

    def _spawn(self, target, name: str, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _accept_forever(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            mode = self._mode
            if mode == "refuse":
                _reset(client)
                continue
            upstream = None
            if mode != "blackhole":
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    _reset(client)
                    continue
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, upstream)
            with self._lock:
                self._links.append(link)
            if upstream is not None:
                self._spawn(self._pump, "faultproxy-up", link, client, upstream)
                self._spawn(self._pump, "faultproxy-down", link, upstream, client)

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not link.closed.is_set() and not self._stop.is_set():
                if self._mode == "blackhole":
                    # leave the bytes in the kernel's buffers: they flow again once the mode changes
                    time.sleep(_POLL)
                    continue
                readable, _, _ = select.select([source], [], [], _POLL)
                if not readable or self._mode == "blackhole":
                    continue
                data = source.recv(self.chunk)
                if not data:
                    # an orderly close on one side is passed on as one
                    with contextlib.suppress(OSError):
                        sink.shutdown(socket.SHUT_WR)
                    link.half_closed()
                    return
                if self._mode == "slow":
                    time.sleep(self.delay)
                # a blackhole that began while this chunk was held back holds it too: a frozen link
                # lets nothing more through, not even what was already read from it
                while self._mode == "blackhole" and not link.closed.is_set() and not self._stop.is_set():
                    time.sleep(_POLL)
                if link.closed.is_set():
                    return
                sink.sendall(data)
                self.forwarded += 1
        except (OSError, ValueError):
            # reset by the other side or by cut(): the whole link goes
            link.close()
