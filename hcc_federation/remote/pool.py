"""SSH transports per (cluster, user), shared by all threads: a channel per command, SFTP sessions kept.

One transport per (cluster, user) while it keeps up; a second and third join it while every one is
busy (hcc.ssh.connections_per_user), and idle out again.
"""

import base64
import contextlib
import copy
import hashlib
import logging
import select
import socket
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import paramiko

from hcc_federation.remote.endpoint import ClusterEndpoint
from hcc_federation.remote.errors import (
    ClusterUnreachable,
    HostKeyRejected,
    OutputTooLarge,
    RemoteError,
    RemoteTimeout,
)
from hcc_federation.remote.identity import Identity
from hcc_federation.remote.paramiko_compat import (
    RekeySafeTransport,
    bound_channel_waits,
    forget_old_channels,
    send_data,
    send_eof,
    send_signal,
)
from hcc_federation.remote.result import CommandResult
from hcc_federation.settings import Settings, SshSettings

log = logging.getLogger(__name__)

# AES-GCM doubles paramiko's bulk throughput against OpenSSH (173 -> 328 MiB/s for SFTP writes here).
PREFERRED_CIPHER = "aes128-gcm@openssh.com"
# What one recv asks for; paramiko hands out at most what its buffer holds anyway.
_CHUNK = 65536
# paramiko remembers every channel id a transport has opened (Transport.channels_seen), so that a
# late message for a closed channel is ignored instead of ending the connection, and never forgets
# one: about 75 bytes per channel, which grew a server by 8 MiB in a 10-minute soak at 120 requests/s
# (bench/bench_load.py --soak 600; tracemalloc named nothing else), some 40 MiB an hour for a busy
# connection until max_lifetime retires it. The latest ids are kept: at 150 channels/s, 16,384 ids
# cover the last 100 s, far longer than sshd takes to answer for a channel (about 1.2 MiB each).
CHANNELS_REMEMBERED = 16384
# Host key algorithms that a known_hosts entry of a given key type can verify.
_HOST_KEY_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}

_Key = tuple[str, str]
# After an extra connection of a key failed to open, its requests stay on the connections they have
# for this long before one tries again: a refusing sshd (MaxStartups) is not asked on every request.
JOIN_RETRY_AFTER = 5.0


def fingerprint(key: paramiko.PKey) -> str:
    """The key's SHA256 fingerprint as `ssh-keygen -l` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class ProbeResult:
    """What a health probe saw: the SSH service answers with a trusted host key, or not."""

    status: Literal["up", "down", "hostkey_mismatch"]
    detail: str
    latency_ms: float


class _Entry:
    """One pooled transport of a (cluster, user) and what guards it.

    ``leases`` counts threads between asking for the transport and giving their channel back; it
    is only touched under the pool's lock, and only an entry without leases may be closed by the
    reaper or evicted, so no thread ever sees its transport closed by the pool under it.
    """

    __slots__ = (
        "connect_lock",
        "capacity",
        "dropped",
        "failure",
        "attempts",
        "last_used",
        "changed",
        "connected_at",
        "leases",
        "nested_slots",
        "parked",
        "slots",
        "transport",
        "waiting",
    )

    def __init__(self, max_sessions: int, lock: threading.Lock) -> None:
        self.transport: paramiko.Transport | None = None
        # signalled (under the pool's lock) when a slot is released or an SFTP session parked
        self.changed = threading.Condition(lock)
        # one connect at a time per key: 20 concurrent first requests make one connection
        self.connect_lock = threading.Lock()
        # Channels per transport stay below sshd's MaxSessions: more would fail with "open failed".
        # A few are kept for a thread that opens a second channel while holding one (a stat or a
        # getent run inside an open SFTP session): had it waited in the same queue, eight requests
        # each holding one slot and each waiting for a second one stalled every slot until the
        # command timeout (30 concurrent calls of one user: 22 answered 504 after 20 s).
        reserve = nested_reserve(max_sessions)
        # the main queue's slots: a lease beyond them waits, which is what makes a transport busy
        self.capacity = max_sessions - reserve
        self.slots = threading.BoundedSemaphore(self.capacity)
        self.nested_slots = threading.BoundedSemaphore(reserve) if reserve else self.slots
        self.leases = 0
        # forgotten by the pool while threads still lease it (an extra that failed to connect):
        # they must not connect it, or its transport would belong to no key and never be closed
        self.dropped = False
        self.last_used = time.monotonic()
        self.connected_at = time.monotonic()
        # the outcome of the latest connect attempt, so that threads that queued behind a failed
        # attempt fail with it instead of each waiting out another connect timeout in turn
        self.attempts = 0
        self.failure: RemoteError | None = None
        # SFTP sessions kept open between requests (newest last), each still holding its slot of
        # ``slots``: see ConnectionPool.open_sftp. Touched only under the pool's lock.
        self.parked: list[paramiko.SFTPClient] = []
        # threads waiting for a slot of ``slots``: while any wait, a finished SFTP session is closed
        # and its slot given back rather than parked
        self.waiting = 0


class _Group:
    """The transports of one (cluster, user): the first, then extras joined while all are busy.

    Touched only under the pool's lock. ``joining`` is the extra being connected (one at a time per
    key): the requests that lease it wait for that connect, and fall back to the others if it fails.
    """

    __slots__ = ("entries", "joining", "join_after")

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.joining: _Entry | None = None
        self.join_after = 0.0


# the defaults of a pool built by hand (scripts, tests) are the settings' defaults, written once there
_SSH_DEFAULTS = SshSettings()


class ConnectionPool:
    """Pooled, authenticated SSH transports to clusters, shared by every thread of the service.

    The pool holds a paramiko Transport per (endpoint name, username) and opens one channel per
    command on it, at most ``endpoint.max_sessions`` at a time (further commands wait for a slot,
    within their timeout). While every transport of a key has all its queue's slots leased, the
    next request opens another one, up to ``connections_per_user`` (see ``_pick_locked``). The
    first call for a key connects, checks the server's host key against the endpoint's
    known_hosts file and logs in with the identity given; later calls reuse the transports (and
    open extras) whatever identity they pass, so callers must pass identities only for users the
    service has authenticated itself; endpoints are told apart by name alone. Transports idle for
    ``idle_timeout`` seconds are closed, and past ``max_connections`` the least recently used idle
    ones are (a soft cap: a transport with a channel open is never closed by the pool); an extra
    transport is never opened at or past the cap.
    """

    def __init__(
        self,
        max_connections: int = _SSH_DEFAULTS.max_connections,
        idle_timeout: float = _SSH_DEFAULTS.idle_timeout,
        reaper_interval: float = 30.0,
        max_lifetime: float = _SSH_DEFAULTS.max_lifetime,
        sftp_sessions: int = _SSH_DEFAULTS.sftp_sessions,
        connections_per_user: int = _SSH_DEFAULTS.connections_per_user,
    ) -> None:
        if (
            max_connections <= 0
            or idle_timeout <= 0
            or reaper_interval <= 0
            or max_lifetime <= 0
            or connections_per_user <= 0
        ):
            raise ValueError(
                "max_connections, idle_timeout, reaper_interval, max_lifetime and connections_per_user"
                " must be positive"
            )
        if sftp_sessions < 0:
            raise ValueError("sftp_sessions must not be negative")
        # SFTP sessions kept open per connection between requests (0: a new one per request)
        self.sftp_sessions = sftp_sessions
        self.max_connections = max_connections
        # transports one (cluster, user) may hold at once: 1 shares one among all its requests
        self.connections_per_user = connections_per_user
        self.idle_timeout = idle_timeout
        # a connection is logged in once; retiring it after a while makes the cluster check the
        # person's credentials again (a changed password, a locked account, an expired certificate)
        self.max_lifetime = max_lifetime
        self.reaper_interval = reaper_interval
        self._lock = threading.Lock()
        self._local = threading.local()
        self._groups: dict[_Key, _Group] = {}
        self._counters = {
            "connects": 0,
            "connect_failures": 0,
            "reuses": 0,
            "reconnects": 0,
            "open_retries": 0,
            "overflow_connects": 0,
            # extra transports opened for a key whose transports were all busy, and failed attempts
            "joins": 0,
            "join_failures": 0,
            "evictions": 0,
            "idle_closed": 0,
            "retired": 0,
            "sftp_opened": 0,
            "sftp_reused": 0,
        }
        self._channels_in_use = 0
        self._reaper: threading.Thread | None = None
        self._reaper_stop = threading.Event()

    # ------------------------------------------------------------------ public API

    def run(
        self,
        endpoint: ClusterEndpoint,
        identity: Identity,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        output_limit: int | None = None,
    ) -> CommandResult:
        """Run ``argv`` on the cluster as ``identity`` and return its exit status and output.

        Every argument arrives literally (the command line is ``shlex.join(argv)``, after the
        endpoint's env and prefix). ``timeout`` (default ``endpoint.command_timeout``) bounds the
        wait for a free session slot and the command itself; connecting is bounded separately by
        ``endpoint.connect_timeout``. A non-zero exit status is not an error here: look at
        ``result.ok``. Raises ClusterUnreachable, HostKeyRejected, CredentialsRefused,
        RemoteTimeout (the remote command is abandoned, not re-run) or OutputTooLarge (the cap,
        default ``endpoint.output_limit``, applies to stdout and stderr together).
        """
        command = endpoint.command_line(argv)
        timeout = endpoint.command_timeout if timeout is None else timeout
        limit = endpoint.output_limit if output_limit is None else output_limit
        if timeout <= 0 or limit < 0:
            raise ValueError("timeout must be positive and output_limit not negative")
        with self._channel(endpoint, identity, timeout) as (channel, deadline):
            self._exec(channel, endpoint, command)
            try:
                stdout, stderr = self._collect(channel, endpoint, stdin, deadline, limit)
                remaining = deadline - time.monotonic()
                # sshd sends exit-status after the EOF; usually it is already here
                if not channel.status_event.wait(max(remaining, 0)):
                    raise RemoteTimeout(endpoint.name, f"the command timed out after {timeout:g} s")
            except RemoteError:
                _interrupt(channel)
                raise
            # -1: the command died of a signal (sshd sent exit-signal, which paramiko does not keep)
            return CommandResult(tuple(argv), channel.exit_status, stdout, stderr)

    @contextlib.contextmanager
    def exec_channel(
        self,
        endpoint: ClusterEndpoint,
        identity: Identity,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        stdin: bool = False,
    ) -> Iterator[paramiko.Channel]:
        """Start ``argv`` and yield its channel for streaming (e.g. ``cat -- PATH`` for downloads).

        The channel holds a session slot until the block ends, when it is closed. Reads on it time
        out after ``timeout`` (default ``endpoint.command_timeout``) without data, raising
        ``socket.timeout``; the caller owns reading stdout/stderr and the exit status. With
        ``stdin`` the command's stdin stays open for the caller to write (and ``shutdown_write``).
        """
        command = endpoint.command_line(argv)
        timeout = endpoint.command_timeout if timeout is None else timeout
        with self._channel(endpoint, identity, timeout) as (channel, _deadline):
            self._exec(channel, endpoint, command)
            if not stdin:
                # streaming output: the command's stdin is closed, so it cannot wait on it
                send_eof(channel)
            channel.settimeout(timeout)
            try:
                yield channel
            finally:
                if not channel.exit_status_ready():
                    # the caller gave up early (a client went away mid-download): stop the command
                    _interrupt(channel)

    @contextlib.contextmanager
    def open_sftp(
        self, endpoint: ClusterEndpoint, identity: Identity, *, timeout: float | None = None
    ) -> Iterator[paramiko.SFTPClient]:
        """Yield an SFTP client on the pooled transport; it holds a session slot until the block ends.

        Each SFTP request times out after ``timeout`` (default ``endpoint.command_timeout``). The
        session is kept open for the next block of the same (cluster, user) when this one left no
        request unanswered (up to ``sftp_sessions`` per connection, each keeping its slot, closed
        with the connection or as soon as a command waits for a slot): a new channel and subsystem
        cost three round trips, about 2.3 ms of a 3.2 ms warm listing here.
        """
        timeout = endpoint.command_timeout if timeout is None else timeout
        with self._lease(endpoint, identity) as (entry, transport):
            held = self._held_slots()
            nested = bool(held.get(id(entry)))
            private = None
            slots = entry.nested_slots if nested else entry.slots
            deadline = time.monotonic() + timeout
            sftp = self._take_slot(entry, endpoint, timeout, nested, transport)
            reused = sftp is not None
            held[id(entry)] = held.get(id(entry), 0) + 1
            with self._lock:
                self._channels_in_use += 1
                self._counters["sftp_reused" if reused else "sftp_opened"] += 1
            keep = False
            try:
                if sftp is None:
                    channel, private = self._open_session(
                        entry, endpoint, identity, transport, deadline, nested
                    )
                    try:
                        bound_channel_waits(channel, timeout)
                        forget_old_channels(channel.get_transport(), CHANNELS_REMEMBERED)
                        channel.settimeout(timeout)
                        channel.invoke_subsystem("sftp")
                        sftp = paramiko.SFTPClient(channel)
                    except TimeoutError:
                        _close_quietly(channel)
                        raise RemoteTimeout(
                            endpoint.name, f"SFTP did not start within {timeout:g} s"
                        ) from None
                    except (paramiko.SSHException, EOFError, OSError) as exc:
                        _close_quietly(channel)
                        raise ClusterUnreachable(
                            endpoint.name, f"SFTP could not start: {_reason(exc)}"
                        ) from None
                else:
                    sftp.get_channel().settimeout(timeout)
                try:
                    yield sftp
                except TimeoutError:  # socket.timeout: the channel's timeout passed without an answer
                    raise RemoteTimeout(
                        endpoint.name, f"an SFTP request got no answer within {timeout:g} s"
                    ) from None
                except (EOFError, paramiko.SSHException, ConnectionError) as exc:
                    # what paramiko raises when the link breaks under a request; a file system's
                    # own answers are OSErrors with an errno and pass through
                    raise ClusterUnreachable(
                        endpoint.name, f"the connection was lost during SFTP work: {_reason(exc)}"
                    ) from None
                finally:
                    # kept only on the main queue's slots, on the pooled transport, with no answer
                    # outstanding (a timed-out or abandoned request would answer the next user)
                    keep = (
                        not nested
                        and private is None
                        and _sftp_idle(sftp, transport)
                        and self._park(entry, sftp, transport)
                    )
            finally:
                if not keep:
                    if sftp is not None:
                        _close_quietly(sftp)
                    if private is not None:
                        private.close()
                with self._lock:
                    self._channels_in_use -= 1
                held[id(entry)] -= 1
                if not held[id(entry)]:
                    del held[id(entry)]
                if not keep:
                    self._release_slot(entry, slots)

    @contextlib.contextmanager
    def open_tunnel(
        self,
        endpoint: ClusterEndpoint,
        identity: Identity,
        host: str,
        port: int,
        *,
        timeout: float | None = None,
    ) -> Iterator[paramiko.Channel]:
        """Yield a direct-tcpip channel from the cluster's login node to ``host:port``, as ``identity``.

        For reaching a server that only the cluster can reach (a notebook on a compute node). It
        takes no session slot: sshd's MaxSessions counts sessions, not forwarded connections.
        Raises ConnectionRefusedError when sshd could not connect (nothing listens there yet, or
        forwarding is not allowed); reads time out after ``timeout`` (socket.timeout).
        """
        timeout = endpoint.command_timeout if timeout is None else timeout
        with self._lease(endpoint, identity) as (entry, transport):
            try:
                channel = transport.open_channel(
                    "direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout
                )
            except paramiko.ChannelException as exc:
                raise ConnectionRefusedError(f"{host}:{port}: {exc.text}") from None
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise ClusterUnreachable(
                    endpoint.name, f"no tunnel to {host}:{port}: {_reason(exc)}"
                ) from None
            channel.settimeout(timeout)
            try:
                yield channel
            finally:
                with contextlib.suppress(Exception):
                    channel.close()

    def probe(self, endpoint: ClusterEndpoint, timeout: float = 3.0) -> ProbeResult:
        """Check that the cluster's sshd answers with a trusted host key: no login, nothing pooled."""
        started = time.monotonic()
        status: Literal["up", "down", "hostkey_mismatch"]
        try:
            transport = _start_transport(endpoint, timeout)
        except HostKeyRejected as exc:
            status, detail = "hostkey_mismatch", exc.detail
        except RemoteError as exc:
            status, detail = "down", exc.detail
        else:
            transport.close()
            status, detail = "up", f"{endpoint.host}:{endpoint.port} answered with a trusted host key"
        return ProbeResult(status, detail, round((time.monotonic() - started) * 1000, 2))

    def stats(self) -> dict[str, int]:
        """Counters since the pool was made, plus the transports and channels open right now."""
        with self._lock:
            entries = [entry for _key, _group, entry in self._all_entries_locked()]
            return {
                **self._counters,
                "open_transports": sum(1 for e in entries if e.transport is not None),
                "channels_in_use": self._channels_in_use,
                "sftp_parked": sum(len(e.parked) for e in entries),
            }

    def transports_of(self, endpoint_name: str, username: str) -> int:
        """How many live transports the pool holds for (cluster, user) right now."""
        with self._lock:
            group = self._groups.get((endpoint_name, username))
            entries = group.entries if group is not None else []
            return sum(1 for e in entries if e.transport is not None and e.transport.is_active())

    def reap_idle(self) -> int:
        """Close transports idle for ``idle_timeout``, dead ones, and the least recently used idle
        ones past ``max_connections``; return how many. The reaper thread calls this."""
        now = time.monotonic()
        victims = []
        with self._lock:
            for key, group, entry in self._all_entries_locked():
                if entry.leases:
                    continue
                if entry.transport is None or not entry.transport.is_active():
                    # dead or never connected: nothing to keep, and the dict must not grow forever
                    if entry.transport is not None:
                        victims.append(entry.transport)
                    self._drop_locked(key, group, entry)
                elif now - entry.last_used >= self.idle_timeout:
                    # extras joined in a burst idle out like this, back to one transport
                    victims.append(entry.transport)
                    self._counters["idle_closed"] += 1
                    self._drop_locked(key, group, entry)
                elif now - entry.connected_at >= self.max_lifetime:
                    victims.append(entry.transport)
                    self._counters["retired"] += 1
                    self._drop_locked(key, group, entry)
            victims += self._over_cap_locked()
        _close_all(victims)
        return len(victims)

    def close_all(self) -> None:
        """Close every transport (channels still open fail) and stop the reaper; the pool stays usable."""
        self._reaper_stop.set()
        with self._lock:
            victims = [e.transport for _k, _g, e in self._all_entries_locked() if e.transport is not None]
            self._groups.clear()
            reaper, self._reaper = self._reaper, None
        _close_all(victims)
        if reaper is not None and reaper is not threading.current_thread():
            reaper.join(timeout=5)

    @classmethod
    def from_settings(cls, settings: "Settings") -> "ConnectionPool":
        """The service's pool, from hcc.ssh.*."""
        ssh = settings.ssh
        return cls(
            max_connections=ssh.max_connections,
            idle_timeout=ssh.idle_timeout,
            max_lifetime=ssh.max_lifetime,
            sftp_sessions=ssh.sftp_sessions,
            connections_per_user=ssh.connections_per_user,
        )

    def __enter__(self) -> "ConnectionPool":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_all()

    # ------------------------------------------------------------------ leases, slots, channels

    @contextlib.contextmanager
    def _lease(
        self, endpoint: ClusterEndpoint, identity: Identity
    ) -> Iterator[tuple[_Entry, paramiko.Transport]]:
        """Lease a transport of (cluster, user), connected, until the block ends (see ``_pick_locked``).

        When the lease is for an extra transport and it cannot be connected, the request goes on
        over the transports the key has: joining is an optimisation, never a new way to fail.
        """
        key = (endpoint.name, identity.username)
        entry, extra = self._take_lease(key, endpoint, join=True)
        try:
            if extra:
                try:
                    transport = self._transport(entry, endpoint, identity)
                except RemoteError as exc:
                    self._join_failed(key, entry, endpoint, identity, exc)
                    entry, _ = self._take_lease(key, endpoint, join=False)
                    transport = self._transport(entry, endpoint, identity)
                else:
                    self._joined(key, entry)
            else:
                transport = self._transport(entry, endpoint, identity)
            yield entry, transport
        finally:
            with self._lock:
                entry.leases -= 1
                entry.last_used = time.monotonic()

    def _take_lease(self, key: _Key, endpoint: ClusterEndpoint, join: bool) -> tuple[_Entry, bool]:
        """A leased entry of ``key`` and whether it is an extra being connected."""
        stale = None
        with self._lock:
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group()
            entry, extra = self._pick_locked(group, endpoint, join)
            if not extra and not entry.leases and entry.transport is not None:
                now = time.monotonic()
                # expired while the reaper slept: replace it rather than trust a stale connection
                if now - entry.last_used >= self.idle_timeout:
                    stale, entry.transport = entry.transport, None
                    self._counters["idle_closed"] += 1
                elif now - entry.connected_at >= self.max_lifetime:
                    stale, entry.transport = entry.transport, None
                    self._counters["retired"] += 1
            entry.leases += 1
        if stale is not None:
            stale.close()
        return entry, extra

    def _pick_locked(self, group: _Group, endpoint: ClusterEndpoint, join: bool) -> tuple[_Entry, bool]:
        """The entry a request of this key takes, and whether it is an extra being connected (caller
        holds the lock).

        The first transport with a free slot of its queue (leases below its capacity) serves: the
        earlier ones fill first, so that extras get work only in a burst and idle out after it. When
        every one is full, the request would queue for a slot (with one transport per user, 100
        clients of one user spent 4.5 % of their time there and sshd ran one process for all of
        them): then it opens one more, up to ``connections_per_user``, one at a time per key, not
        while one is connecting, not within JOIN_RETRY_AFTER of a failed attempt, and never at or
        past ``max_connections``; the requests that come meanwhile wait for that connect, up to the
        extra's capacity, rather than queue behind full ones; else it takes the least leased. A
        thread that holds a channel of one of the key's transports stays on it: its second channel
        takes that one's reserve.
        """
        held = self._held_slots()
        usable = [e for e in group.entries if e is not group.joining]
        for entry in usable:
            if held.get(id(entry)):
                return entry, False
        joining = group.joining
        if not usable:
            if joining is not None:
                # the extra being connected is all there is (the others were closed meanwhile)
                return joining, True
            entry = _Entry(endpoint.max_sessions, self._lock)
            group.entries.append(entry)
            return entry, False
        for entry in usable:
            if entry.leases < entry.capacity:
                return entry, False
        if joining is not None and joining.leases < joining.capacity:
            return joining, True
        if (
            join
            and group.joining is None
            # one still connecting is not busy: its queue is the threads that wait for its connect
            and all(e.transport is not None for e in usable)
            and len(group.entries) < self.connections_per_user
            and time.monotonic() >= group.join_after
            and self._open_count_locked() < self.max_connections
        ):
            entry = group.joining = _Entry(endpoint.max_sessions, self._lock)
            group.entries.append(entry)
            return entry, True
        return min(usable, key=lambda e: e.leases), False

    def _joined(self, key: _Key, entry: _Entry) -> None:
        """The extra is up: every request may take it now (counted once, by its first lessee)."""
        with self._lock:
            group = self._groups.get(key)
            if group is not None and group.joining is entry:
                group.joining = None
                self._counters["joins"] += 1

    def _join_failed(
        self, key: _Key, entry: _Entry, endpoint: ClusterEndpoint, identity: Identity, exc: RemoteError
    ) -> None:
        """Give back the lease of an extra that could not connect, and forget the extra.

        Its other lessees fail the same way (see _transport) and come here too.
        """
        with self._lock:
            entry.leases -= 1
            entry.last_used = time.monotonic()
            group = self._groups.get(key)
            first = group is not None and group.joining is entry
            if first:
                self._counters["join_failures"] += 1
                group.join_after = time.monotonic() + JOIN_RETRY_AFTER
            if group is not None:
                self._drop_locked(key, group, entry)
        if first:
            log.warning(
                "could not open another connection to %s as %s: %s",
                endpoint.name,
                identity.username,
                exc.detail,
            )

    def _all_entries_locked(self) -> list[tuple[_Key, _Group, _Entry]]:
        """Every entry with its key and group, as a list that may be changed while walking it."""
        return [(key, group, entry) for key, group in self._groups.items() for entry in group.entries]

    def _open_count_locked(self) -> int:
        """Transports open or being opened as extras, of every key (caller holds the lock)."""
        return sum(
            (entry.transport is not None or entry is group.joining)
            for _key, group, entry in self._all_entries_locked()
        )

    def _drop_locked(self, key: _Key, group: _Group, entry: _Entry) -> None:
        """Forget ``entry`` (its transport is the caller's to close), and its key once it has none."""
        entry.dropped = True
        if entry in group.entries:
            group.entries.remove(entry)
        if group.joining is entry:
            group.joining = None
        if not group.entries and self._groups.get(key) is group:
            del self._groups[key]

    @contextlib.contextmanager
    def _channel(
        self, endpoint: ClusterEndpoint, identity: Identity, timeout: float
    ) -> Iterator[tuple[paramiko.Channel, float]]:
        """Yield a new session channel on the pooled transport and the deadline of its work."""
        with self._lease(endpoint, identity) as (entry, transport):
            # the deadline starts after connecting, which has its own budget (connect_timeout)
            deadline = time.monotonic() + timeout
            held = self._held_slots()
            # a thread that already holds a channel of this entry takes a slot of the reserve: the
            # reserve's holders open no further channel, so they finish and nobody waits in a circle
            nested = bool(held.get(id(entry)))
            slots = entry.nested_slots if nested else entry.slots
            self._take_slot(entry, endpoint, timeout, nested)
            held[id(entry)] = held.get(id(entry), 0) + 1
            with self._lock:
                self._channels_in_use += 1
            private = None
            try:
                channel, private = self._open_session(entry, endpoint, identity, transport, deadline, nested)
                # exec and subsystem requests wait for their answer within the command's budget
                bound_channel_waits(channel, timeout)
                forget_old_channels(channel.get_transport(), CHANNELS_REMEMBERED)
                try:
                    yield channel, deadline
                finally:
                    # a dead socket makes close() raise; that must not hide the real error
                    with contextlib.suppress(Exception):
                        channel.close()
            finally:
                if private is not None:
                    private.close()
                with self._lock:
                    self._channels_in_use -= 1
                held[id(entry)] -= 1
                if not held[id(entry)]:
                    del held[id(entry)]
                self._release_slot(entry, slots)

    def _take_slot(
        self,
        entry: _Entry,
        endpoint: ClusterEndpoint,
        timeout: float,
        nested: bool,
        transport: paramiko.Transport | None = None,
    ) -> paramiko.SFTPClient | None:
        """A session slot within ``timeout``; with ``transport`` (an SFTP caller), a parked SFTP
        session of it (which comes with its slot) if one is or becomes free, else None.

        A command takes a parked session's slot when no slot is free (the session is closed). A
        nested caller takes the reserve, which parked sessions never hold. Waits on the entry's
        condition, which every slot release and every parked session signals.
        """
        if nested:
            if not entry.nested_slots.acquire(timeout=timeout):
                raise RemoteTimeout(
                    endpoint.name, f"all {endpoint.max_sessions} sessions stayed busy for {timeout:g} s"
                )
            return None
        deadline = time.monotonic() + timeout
        command = transport is None
        with self._lock:
            entry.waiting += command
        try:
            while True:
                found = victim = None
                stale: list[paramiko.SFTPClient] = []
                with self._lock:
                    # everything is looked at under the lock that signals: no wake-up is missed
                    if command:
                        if entry.slots.acquire(blocking=False):
                            return None
                        victim = entry.parked.pop(0) if entry.parked else None
                    else:
                        while entry.parked and found is None:
                            sftp = entry.parked.pop()
                            if _sftp_idle(sftp, transport):
                                found = sftp
                            else:
                                stale.append(sftp)
                        if found is None and not stale and entry.slots.acquire(blocking=False):
                            return None
                    if found is None and victim is None and not stale:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise RemoteTimeout(
                                endpoint.name,
                                f"all {endpoint.max_sessions} sessions stayed busy for {timeout:g} s",
                            )
                        entry.changed.wait(remaining)
                        continue
                if victim is not None:
                    # a parked session gives its slot to this command
                    _close_quietly(victim)
                    return None
                # sessions of a connection that is gone are closed; without a live one found, this
                # caller keeps the first one's slot
                for sftp in stale:
                    _close_quietly(sftp)
                for _ in stale[0 if found is not None else 1 :]:
                    self._release_slot(entry, entry.slots)
                return found
        finally:
            with self._lock:
                entry.waiting -= command

    def _release_slot(self, entry: _Entry, slots: threading.BoundedSemaphore) -> None:
        slots.release()
        with self._lock:
            entry.changed.notify_all()

    def _park(self, entry: _Entry, sftp: paramiko.SFTPClient, transport: paramiko.Transport) -> bool:
        """Keep ``sftp`` (and its slot) for the next caller; False when it must be closed instead.

        Not while a command waits for a slot: it gets this one's slot instead."""
        with self._lock:
            if (
                entry.waiting
                or len(entry.parked) >= self.sftp_sessions
                or entry.transport is not transport
                or not transport.is_active()
            ):
                return False
            # the next user starts from the home directory, as a new session does
            sftp._cwd = None
            entry.parked.append(sftp)
            entry.changed.notify_all()
            return True

    def _held_slots(self) -> dict[int, int]:
        """How many channels the calling thread holds, by entry (id), right now."""
        held = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = {}
        return held

    def _transport(
        self,
        entry: _Entry,
        endpoint: ClusterEndpoint,
        identity: Identity,
        dead: paramiko.Transport | None = None,
    ) -> paramiko.Transport:
        """The entry's live transport, connecting (once for all waiting threads) when there is none."""
        transport = entry.transport
        if transport is not None and transport is not dead and transport.is_active():
            with self._lock:
                self._counters["reuses"] += 1
            return transport
        attempts_seen = entry.attempts
        # bounded wait: the thread holding the lock is itself bounded by connect_timeout (3 phases)
        if not entry.connect_lock.acquire(timeout=3 * endpoint.connect_timeout + 1):
            raise RemoteTimeout(endpoint.name, "timed out waiting for another thread's connection attempt")
        try:
            transport = entry.transport
            if transport is not None and transport is not dead and transport.is_active():
                with self._lock:
                    self._counters["reuses"] += 1
                return transport
            if entry.attempts != attempts_seen and entry.failure is not None:
                # someone else just tried and failed while we queued: fail the same way, at once
                raise copy.copy(entry.failure)
            if entry.dropped:
                # an extra forgotten after its connect failed (see _join_failed): never reconnected
                raise (
                    copy.copy(entry.failure)
                    if entry.failure is not None
                    else ClusterUnreachable(endpoint.name, "the connection was closed")
                )
            if transport is not None:
                # it died (server restart, network cut, keepalive failure): replace it
                transport.close()
                entry.transport = None
                with self._lock:
                    self._counters["reconnects"] += 1
            try:
                transport = self._connect(endpoint, identity)
            except RemoteError as exc:
                entry.failure = exc
                entry.attempts += 1
                with self._lock:
                    self._counters["connect_failures"] += 1
                raise
            entry.failure = None
            entry.attempts += 1
            entry.transport = transport
            entry.connected_at = time.monotonic()
            with self._lock:
                self._counters["connects"] += 1
                victims = self._over_cap_locked()
            _close_all(victims)
            self._ensure_reaper()
            return transport
        finally:
            entry.connect_lock.release()

    def _open_session(
        self,
        entry: _Entry,
        endpoint: ClusterEndpoint,
        identity: Identity,
        transport: paramiko.Transport,
        deadline: float,
        nested: bool = False,
    ) -> tuple[paramiko.Channel, paramiko.Transport | None]:
        """Open a session channel, waiting out a busy server and reconnecting once if the transport died.

        Returns the channel and, when it had to be opened on a connection of its own (see below),
        that connection, for the caller to close with the channel. Retrying is safe only because
        nothing has been sent on the channel yet: a command that was started is never run again.
        """
        reconnected = False
        backoff = 0.002
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RemoteTimeout(endpoint.name, "timed out opening a session")
            try:
                # never a tiny timeout: a channel paramiko gave up on may still open on the server
                # and hold one of its sessions until the transport closes
                return transport.open_session(timeout=max(remaining, endpoint.connect_timeout)), None
            except (paramiko.SSHException, EOFError, OSError) as exc:
                failure = exc
            if not transport.is_active():
                if reconnected:
                    detail = "the connection died while opening a session"
                    raise ClusterUnreachable(endpoint.name, detail) from None
                log.info("transport to %s as %s died; reconnecting once", endpoint.name, identity.username)
                transport = self._transport(entry, endpoint, identity, dead=transport)
                reconnected = True
                continue
            if "timeout" in str(failure).lower():
                raise RemoteTimeout(endpoint.name, "timed out opening a session") from None
            if nested:
                # This thread holds a channel of this connection and sshd refuses it another: its
                # MaxSessions is below hcc.cluster.<name>.max_sessions. Waiting can be circular here
                # (every session held by a thread that wants a second one: with 16 slots against
                # sshd's 10, 11 of 30 concurrent calls waited out their timeout, 504), so the second
                # channel goes over a connection of its own, closed with it.
                with self._lock:
                    self._counters["overflow_connects"] += 1
                private = self._connect(endpoint, identity)
                try:
                    remaining = max(deadline - time.monotonic(), endpoint.connect_timeout)
                    return private.open_session(timeout=remaining), private
                except BaseException:
                    private.close()
                    raise
            # The transport is fine but sshd said no: "no more sessions" because it still counts
            # sessions we have closed (it frees one only once the command's process is reaped and
            # its CLOSE processed, which can lag behind our slot accounting), or a bounded policy.
            # paramiko reports that as ChannelException, or as "Unable to open channel." when
            # concurrent opens race on its saved exception. Wait a little and try again.
            with self._lock:
                self._counters["open_retries"] += 1
            time.sleep(min(backoff, max(deadline - time.monotonic(), 0)))
            backoff = min(backoff * 2, 0.05)

    def _over_cap_locked(self) -> list[paramiko.Transport]:
        """Detach least recently used idle transports past max_connections (caller holds the lock).

        Runs when a new transport is added and on each reaper pass, not when a channel is given
        back: with the oldest transports busy, that would close the one just used and make its
        user reconnect on every call.
        """
        every = self._all_entries_locked()
        open_count = sum(1 for _k, _g, e in every if e.transport is not None)
        victims = []
        idle = sorted(
            ((key, group, e) for key, group, e in every if not e.leases and e.transport is not None),
            key=lambda item: item[2].last_used,
        )
        for key, group, entry in idle:
            if open_count <= self.max_connections:
                break
            victims.append(entry.transport)
            self._drop_locked(key, group, entry)
            open_count -= 1
            self._counters["evictions"] += 1
        return victims

    def _ensure_reaper(self) -> None:
        with self._lock:
            if self._reaper is not None and self._reaper.is_alive():
                return
            self._reaper_stop = threading.Event()
            # the thread holds only a weak reference, so a pool nobody uses any more can be collected
            self._reaper = threading.Thread(
                target=_reap_forever,
                args=(weakref.ref(self), self._reaper_stop, self.reaper_interval),
                name="ssh-pool-reaper",
                daemon=True,
            )
            self._reaper.start()

    # ------------------------------------------------------------------ connecting

    def _connect(self, endpoint: ClusterEndpoint, identity: Identity) -> paramiko.Transport:
        started = time.monotonic()
        transport = _start_transport(endpoint, endpoint.connect_timeout)
        try:
            transport.auth_timeout = endpoint.connect_timeout
            identity.authenticate(transport, endpoint.name)
            if not transport.is_authenticated():
                # partial success (the server wants a second factor): we cannot go further
                raise ClusterUnreachable(endpoint.name, "the server asked for more authentication factors")
        except BaseException:
            transport.close()
            raise
        log.info(
            "connected to %s as %s in %.0f ms",
            endpoint.name,
            identity.username,
            (time.monotonic() - started) * 1000,
        )
        return transport

    # ------------------------------------------------------------------ running a command

    @staticmethod
    def _exec(channel: paramiko.Channel, endpoint: ClusterEndpoint, command: str) -> None:
        try:
            channel.exec_command(command)
        except TimeoutError:
            raise RemoteTimeout(
                endpoint.name, "the server did not answer the request to start the command"
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            # the request may have reached sshd: report, never retry
            raise ClusterUnreachable(endpoint.name, f"could not start the command: {_reason(exc)}") from None

    @staticmethod
    def _collect(
        channel: paramiko.Channel,
        endpoint: ClusterEndpoint,
        stdin: bytes | None,
        deadline: float,
        limit: int,
    ) -> tuple[bytes, bytes]:
        """Feed stdin and read stdout and stderr together until EOF, within the deadline and the cap.

        Reading both streams in one loop (and writing stdin in it too) means a command that fills
        one pipe while we wait on the other, or that answers before it has read all its input,
        cannot deadlock us.
        """
        channel.settimeout(0.0)
        pending = memoryview(stdin or b"")
        if not pending:
            send_eof(channel)
        poller = select.poll()
        # the channel's fd becomes readable when stdout or stderr data, or the EOF, arrives
        poller.register(channel.fileno(), select.POLLIN)
        stdout, stderr = bytearray(), bytearray()
        try:
            while True:
                while pending:
                    sent = send_data(channel, pending[:_CHUNK])
                    if sent < 0:
                        # closed, or the command exited before reading it all: its output tells
                        pending = memoryview(b"")
                    elif sent == 0:
                        break  # the server's window is full: read, then try again
                    else:
                        pending = pending[sent:]
                        if not pending:
                            send_eof(channel)
                got = False
                if channel.recv_ready():
                    stdout += channel.recv(_CHUNK)
                    got = True
                if channel.recv_stderr_ready():
                    stderr += channel.recv_stderr(_CHUNK)
                    got = True
                if len(stdout) + len(stderr) > limit:
                    raise OutputTooLarge(endpoint.name, f"the command wrote more than {limit} bytes")
                if got:
                    continue
                if channel.eof_received:
                    # EOF closes both streams at once and the buffers are now drained
                    return bytes(stdout), bytes(stderr)
                if channel.closed or not channel.get_transport().is_active():
                    raise ClusterUnreachable(endpoint.name, "the connection was lost while the command ran")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RemoteTimeout(endpoint.name, "the command timed out")
                # while stdin waits for the server's window to open, look again soon: the fd does
                # not signal window adjustments
                wait = min(remaining, 0.005) if pending else remaining
                poller.poll(max(1, int(wait * 1000)))
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ClusterUnreachable(
                endpoint.name, f"the connection failed during the command: {_reason(exc)}"
            ) from None


def nested_reserve(max_sessions: int) -> int:
    """Session slots kept for a second channel of a thread that holds one: a quarter, at least one.

    None with a single slot: there a thread that nests waits for itself, so it must not nest.
    """
    return max(1, max_sessions // 4) if max_sessions > 1 else 0


def _interrupt(channel: paramiko.Channel) -> None:
    """Ask sshd to SIGTERM an abandoned command; closing the channel alone leaves it running.

    (It would run on until it next writes to its closed stdout.) Failing is harmless.
    """
    if channel.exit_status_ready():
        return
    with contextlib.suppress(Exception):
        send_signal(channel, "TERM")


def _sftp_idle(sftp: paramiko.SFTPClient, transport: paramiko.Transport) -> bool:
    """The session is open on ``transport`` and waits for no answer (paramiko's ``_expecting``)."""
    channel = sftp.sock
    return (
        not channel.closed
        and not channel.eof_received
        and channel.get_transport() is transport
        and not sftp._expecting
    )


def _close_quietly(closable: paramiko.SFTPClient | paramiko.Channel) -> None:
    # a dead socket makes close() raise; that must not hide the real error
    with contextlib.suppress(Exception):
        closable.close()


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _close_all(transports: list[paramiko.Transport]) -> None:
    for transport in transports:
        with contextlib.suppress(Exception):
            transport.close()


def _reap_forever(pool_ref: "weakref.ref[ConnectionPool]", stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        pool = pool_ref()
        if pool is None:
            return
        try:
            pool.reap_idle()
        except Exception:  # the reaper must outlive any one bad transport
            log.exception("idle reaper failed")
        del pool


def _load_known_hosts(endpoint: ClusterEndpoint) -> paramiko.HostKeys:
    try:
        return paramiko.HostKeys(endpoint.known_hosts)
    except (OSError, paramiko.SSHException) as exc:
        raise HostKeyRejected(endpoint.name, f"cannot read its known_hosts file: {_reason(exc)}") from None


def _start_transport(endpoint: ClusterEndpoint, timeout: float) -> paramiko.Transport:
    """Connect, negotiate keys and verify the host key; the transport is not authenticated yet."""
    known = _load_known_hosts(endpoint)
    name = endpoint.host_key_name
    try:
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    except TimeoutError:
        raise ClusterUnreachable(endpoint.name, f"TCP connect timed out after {timeout:g} s") from None
    except ConnectionRefusedError:
        detail = f"connection refused by {endpoint.host}:{endpoint.port}"
        raise ClusterUnreachable(endpoint.name, detail) from None
    except OSError as exc:
        raise ClusterUnreachable(endpoint.name, f"cannot connect: {exc.strerror or _reason(exc)}") from None
    # without this every small request waits for a delayed ACK (Nagle): 48 ms instead of 3 ms per command
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        transport = RekeySafeTransport(sock)
    except BaseException:
        sock.close()
        raise
    try:
        _negotiate(transport, endpoint, known, name, timeout)
    except BaseException:
        transport.close()
        sock.close()
        raise
    return transport


def _negotiate(
    transport: paramiko.Transport,
    endpoint: ClusterEndpoint,
    known: paramiko.HostKeys,
    name: str,
    timeout: float,
) -> None:
    options = transport.get_security_options()
    if PREFERRED_CIPHER in options.ciphers:
        options.ciphers = (PREFERRED_CIPHER, *(c for c in options.ciphers if c != PREFERRED_CIPHER))
    pinned = known.lookup(name)
    if pinned:
        # ask only for host key types we can check: a host with an RSA and an ed25519 key whose
        # known_hosts pins only the RSA one must not be rejected for offering the other
        allowed = {alg for key_type in pinned for alg in _HOST_KEY_ALGORITHMS.get(key_type, (key_type,))}
        key_types = tuple(t for t in options.key_types if t in allowed)
        if key_types:
            options.key_types = key_types
    transport.banner_timeout = timeout
    transport.handshake_timeout = timeout
    if endpoint.keepalive:
        transport.set_keepalive(endpoint.keepalive)
    done = threading.Event()
    transport.start_client(event=done)
    end = time.monotonic() + timeout
    # paramiko sets the event on success only: watch the transport for failure meanwhile
    while not done.wait(min(0.05, max(end - time.monotonic(), 0))):
        if not transport.is_active():
            break
        if time.monotonic() >= end:
            raise RemoteTimeout(endpoint.name, f"SSH handshake timed out after {timeout:g} s")
    if not transport.is_active():
        exc = transport.get_exception()
        reason = _reason(exc) if exc is not None else "negotiation failed"
        raise ClusterUnreachable(endpoint.name, f"SSH handshake failed: {reason}")
    server_key = transport.get_remote_server_key()
    print_ = fingerprint(server_key)
    if not pinned:
        log.warning(
            "cluster %s (%s) offered an unknown %s host key %s: rejected",
            endpoint.name,
            name,
            server_key.get_name(),
            print_,
        )
        raise HostKeyRejected(endpoint.name, f"unknown host key {print_}", fingerprint=print_)
    expected = pinned.get(server_key.get_name())
    if expected is None or expected != server_key:
        log.warning(
            "cluster %s (%s) offered a %s host key %s that differs from its known_hosts: rejected",
            endpoint.name,
            name,
            server_key.get_name(),
            print_,
        )
        detail = f"host key {print_} differs from known_hosts"
        raise HostKeyRejected(endpoint.name, detail, fingerprint=print_)
