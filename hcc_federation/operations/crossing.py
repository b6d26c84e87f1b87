"""A copy from one cluster to another: pushed by a worker on the source over SSH with a certificate
signed for it alone, or relayed by the service through two streams with bounded memory."""

from __future__ import annotations

import contextlib
import logging
import posixpath
import shlex
import threading
import time
from datetime import timedelta

from cryptography.hazmat.primitives.serialization.ssh import SSHCertPrivateKeyTypes

from ..clusters import ClusterAccess
from ..errors import InvalidArgument
from ..files import validate_path
from ..remote import make_certificate_identity
from . import worker
from .progress import Progress, format_progress
from .service import (
    Started,
    check_source,
    check_target,
    launch,
    make_work_dir,
    measure,
    prepare_receiver,
    prepare_worker,
    read_progress,
    remove_tree,
    replace_private,
    write_private,
)

log = logging.getLogger(__name__)

# Bytes moved at once by a relay: its memory is this plus paramiko's channel windows (2 MiB each).
RELAY_CHUNK = 256 * 1024
# Seconds between two progress writes (and looks for a cancel mark) of a relay.
RELAY_REPORT_EVERY = 1.0


class RelayCancelled(Exception):
    pass


def uses_push(destination: ClusterAccess, ca_key: SSHCertPrivateKeyTypes | None) -> bool:
    """Push when the destination trusts our user CA (certificate identity); relay otherwise."""
    return destination.cluster.settings.identity == "certificate" and ca_key is not None


def start_copy_between(
    source: ClusterAccess,
    destination: ClusterAccess,
    operation_id: str,
    path: str,
    to: str,
    *,
    ca_key: SSHCertPrivateKeyTypes | None,
    certificate_ttl: int,
    cleanup_timeout: float,
    relay_timeout: float,
) -> tuple[Started, str]:
    """Check both ends, prepare both folders, start the push or the relay; returns (started, route)."""
    path = validate_path(path)
    to = validate_path(to, name="to")
    if path == "/":
        # the archive is named by the source's last component, which / has not
        raise InvalidArgument("copy a directory under / rather than / itself", field="from")
    with source.sftp() as sftp:
        check_source(sftp, "copy", path)
    with destination.sftp() as sftp:
        check_target(sftp, to)
    push = uses_push(destination, ca_key)
    temp = worker.temp_path(to, operation_id)
    username = source.identity.username
    work_dir = ""
    try:
        with source.sftp() as sftp:
            if push:
                endpoint = destination.cluster.endpoint
                params = worker.push_params(
                    path, to, temp, endpoint.host, endpoint.port, username, worker.remote_dir(operation_id)
                )
                work_dir = prepare_worker(sftp, operation_id, params)
                _write_push_credential(
                    sftp, work_dir, destination, username, operation_id, ca_key, certificate_ttl
                )
            else:
                work_dir = make_work_dir(sftp, operation_id)
                write_private(
                    sftp, posixpath.join(work_dir, "progress"), _progress_bytes(Progress(state="queued"))
                )
        with destination.sftp() as sftp:
            receiver_dir = prepare_receiver(sftp, operation_id, path, to)
    except Exception:
        if work_dir:
            remove_tree(source, work_dir, cleanup_timeout)
        raise
    try:
        if push:
            return launch(source, work_dir), "push"
        thread = threading.Thread(
            target=relay,
            args=(source, destination, operation_id, work_dir, path, temp),
            kwargs={"timeout": relay_timeout, "cleanup_timeout": cleanup_timeout},
            name=f"hcc-relay-{operation_id[:8]}",
            daemon=True,
        )
        thread.start()
        return Started(work_dir, "service"), "relay"
    except Exception:
        remove_tree(source, work_dir, cleanup_timeout)
        remove_tree(destination, receiver_dir, cleanup_timeout)
        raise


def _write_push_credential(sftp, work_dir, destination, username, operation_id, ca_key, ttl) -> None:
    """A key pair and a certificate for this push alone, and the destination's pinned host keys: files
    the user alone can read, removed by the worker when it ends (and by cancel and hcc-cleanup)."""
    identity = push_certificate(ca_key, username, operation_id, ttl)
    with open(destination.cluster.endpoint.known_hosts, "rb") as handle:
        known_hosts = handle.read()
    write_private(sftp, posixpath.join(work_dir, "push_key"), identity.private_key_openssh)
    write_private(sftp, posixpath.join(work_dir, "push_key-cert.pub"), identity.certificate.encode() + b"\n")
    write_private(sftp, posixpath.join(work_dir, "push_known_hosts"), known_hosts)


def push_certificate(ca_key, username: str, operation_id: str, ttl: int):
    """The identity a push logs in with: valid ``ttl`` seconds, for ``username``, and good only for
    running this operation's receiver (force-command; no pty, no forwarding, no agent)."""
    return make_certificate_identity(
        ca_key,
        username,
        timedelta(seconds=ttl),
        f"hcc-federation operation {operation_id}",
        extensions=(),
        force_command=shlex.join(worker.receive_argv(operation_id)),
    )


def _progress_bytes(progress: Progress) -> bytes:
    stamped = Progress(**{**progress.__dict__, "updated": int(time.time())})
    return format_progress(stamped).encode()


def relay(
    source: ClusterAccess,
    destination: ClusterAccess,
    operation_id: str,
    work_dir: str,
    path: str,
    temp: str,
    *,
    timeout: float,
    cleanup_timeout: float,
) -> None:
    """Stream ``tar`` of ``path`` on the source into recv.sh on the destination, one chunk at a time,
    writing the progress file on the source every second; a ``cancel`` mark there stops it."""
    progress_path = posixpath.join(work_dir, "progress")
    done = 0
    bytes_total = files_total = None
    try:
        with source.sftp() as sftp:
            # du of a big tree may take longer than stale_after: say "running" every second meanwhile,
            # or a reader would take the silence for a dead relay
            replace_private(sftp, progress_path, _progress_bytes(Progress(state="running", bytes_done=0)))
            totals: list[tuple[int | None, int | None]] = []
            measuring = threading.Thread(
                target=lambda: totals.append(measure(source, path, timeout)), daemon=True
            )
            measuring.start()
            while measuring.is_alive():
                measuring.join(RELAY_REPORT_EVERY)
                replace_private(sftp, progress_path, _progress_bytes(Progress(state="running", bytes_done=0)))
            bytes_total, files_total = totals[0] if totals else (None, None)

            def report(state: str, error: str | None = None) -> None:
                final = state == "done"
                progress = Progress(
                    state=state,
                    bytes_done=bytes_total if final else min(done, bytes_total or done),
                    bytes_total=bytes_total,
                    files_done=files_total if final else None,
                    files_total=files_total,
                    error=error,
                )
                replace_private(sftp, progress_path, _progress_bytes(progress))

            report("running")
            last = time.monotonic()
            try:
                with (
                    source.stream(worker.archive_argv(path), timeout=timeout) as out,
                    destination.stream(
                        worker.receive_argv(operation_id), stdin=True, timeout=timeout
                    ) as into,
                ):
                    while True:
                        data = out.recv(RELAY_CHUNK)
                        if not data:
                            break
                        into.sendall(data)
                        done += len(data)
                        if time.monotonic() - last >= RELAY_REPORT_EVERY:
                            last = time.monotonic()
                            if _cancel_asked(sftp, work_dir):
                                raise RelayCancelled
                            report("running")
                    sent = _exit_status(out, timeout)
                    if sent == 0:
                        # the receiver renames the copy into place only after this (see recv.sh)
                        into.sendall(worker.TRAILER)
                    into.shutdown_write()
                    received = _exit_status(into, timeout)
                    if sent != 0:
                        raise RuntimeError(f"tar failed on {source.cluster.name}: {_stderr(out)}")
                    if received != 0:
                        raise RuntimeError(f"the copy failed on {destination.cluster.name}: {_stderr(into)}")
            except RelayCancelled:
                remove_tree(destination, temp, cleanup_timeout)
                report("cancelled", "cancelled")
                return
            except Exception as exc:
                remove_tree(destination, temp, cleanup_timeout)
                report("failed", str(exc)[:900] or type(exc).__name__)
                return
            report("done")
    except Exception:
        log.exception("relay of operation %s failed", operation_id)
        remove_tree(destination, temp, cleanup_timeout)
        with contextlib.suppress(Exception), source.sftp() as sftp:
            if (read_progress(sftp, work_dir) or Progress(state="queued")).final:
                return
            failed = Progress(
                state="failed", bytes_done=done, bytes_total=bytes_total, error="the relay failed"
            )
            replace_private(sftp, progress_path, _progress_bytes(failed))


def _cancel_asked(sftp, work_dir: str) -> bool:
    try:
        sftp.lstat(posixpath.join(work_dir, "cancel"))
    except OSError:
        return False
    return True


def _exit_status(channel, timeout: float) -> int:
    if not channel.status_event.wait(timeout):
        raise RuntimeError("the command did not end in time")
    return channel.exit_status


def _stderr(channel) -> str:
    chunks = []
    with contextlib.suppress(Exception):
        while channel.recv_stderr_ready():
            chunks.append(channel.recv_stderr(4096))
    return b"".join(chunks).decode("utf-8", "replace").strip()[:400] or "no message"
