"""Long file operations on a cluster: check, start (Slurm job or detached), read progress, cancel.

Pyramid-free: the views call these with a ``ClusterAccess`` (the caller on one cluster). Nothing runs
in the service between requests, except the relay of a copy between clusters (relay.py): the worker
on the cluster writes its progress file, and whoever reads an operation reads that file over SFTP.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import secrets
import stat
import time
from dataclasses import dataclass

import paramiko

from ..clusters import ClusterAccess
from ..errors import InvalidArgument
from ..files import (
    AlreadyExists,
    InvalidMove,
    NoSuchPath,
    NotADirectory,
    classify_failure,
    lstat_or_none,
    map_sftp_error,
    validate_path,
)
from ..remote.paramiko_compat import open_exclusive
from . import worker
from .errors import OperationFinished, WorkerNotStarted
from .progress import Progress, format_progress, parse_du, parse_job_id, parse_pid, parse_progress

log = logging.getLogger(__name__)

# A progress file is a few lines; more than this is not ours.
PROGRESS_CAP = 4096
# Seconds a cancel waits for the worker to say it stopped (Slurm's KillWait is 30 s by default; the
# partial copy is removed by the service after this anyway).
CANCEL_WAIT = 8.0


@dataclass(frozen=True)
class Started:
    """How a started operation runs: ``runner`` job (``job_id``), detached (``pid``) or service."""

    work_dir: str
    runner: str
    job_id: str | None = None
    pid: int | None = None


def new_operation_id() -> str:
    """A random public id (32 hex digits): unguessable, and safe in a path and a command."""
    return secrets.token_hex(16)


# ----------------------------------------------------------------------------- checks before start


def _require_directory_parent(sftp: paramiko.SFTPClient, to: str) -> None:
    parent = posixpath.dirname(to) or "/"
    try:
        attr = sftp.stat(parent)
    except OSError as exc:
        error = map_sftp_error(exc, parent, "look at")
        if isinstance(error, NoSuchPath):
            raise NoSuchPath(f"no such directory: {parent}", path=parent, field="to") from None
        raise error from None
    if not stat.S_ISDIR(attr.st_mode or 0):
        raise NotADirectory(f"not a directory: {parent}", path=parent, field="to")


def check_source(sftp: paramiko.SFTPClient, kind: str, path: str) -> paramiko.SFTPAttributes:
    """The source must exist (404); ``/`` is never moved or deleted."""
    if path == "/" and kind != "copy":
        raise InvalidArgument(f"refusing to {kind} /", field="path")
    attr = lstat_or_none(sftp, path)
    if attr is None:
        raise NoSuchPath(f"no such file or directory: {path}", path=path)
    return attr


def check_target(sftp: paramiko.SFTPClient, to: str) -> None:
    """The target must not exist (409, before anything starts) and its directory must (404)."""
    if lstat_or_none(sftp, to) is not None:
        raise AlreadyExists(f"already exists: {to}", path=to, field="to")
    _require_directory_parent(sftp, to)


def check_local(sftp: paramiko.SFTPClient, kind: str, path: str, to: str | None) -> None:
    """The rules of the synchronous routes, checked before the operation is accepted."""
    attr = check_source(sftp, kind, path)
    if kind == "delete":
        if to is not None:
            raise InvalidArgument("a delete takes no 'to'", field="to")
        return
    if to is None:
        raise InvalidArgument(f"a {kind} needs 'to'", field="to")
    if stat.S_ISDIR(attr.st_mode or 0) and (to == path or to.startswith(path.rstrip("/") + "/")):
        raise InvalidMove(f"cannot put {path} inside itself ({to})", path=to, field="to")
    check_target(sftp, to)


# ------------------------------------------------------------------------------ the private folder


def _mkdir_private(sftp: paramiko.SFTPClient, path: str, *, exist_ok: bool) -> None:
    try:
        sftp.mkdir(path, 0o700)
    except OSError as exc:
        attr = lstat_or_none(sftp, path)
        if attr is None or not exist_ok:
            raise classify_failure(sftp, exc, path, "create the directory") from None
        if not stat.S_ISDIR(attr.st_mode or 0):
            raise NotADirectory(f"not a directory: {path}", path=path) from None
        return
    # mkdir's mode passes through the server's umask: make sure nobody else may enter
    sftp.chmod(path, 0o700)


def make_work_dir(sftp: paramiko.SFTPClient, operation_id: str) -> str:
    """Create ``~/.hcc/operations/<id>`` (0700 at each new level); returns its absolute path."""
    home = sftp.normalize(".")
    current = home
    for part in worker.ROOT.split("/"):
        current = posixpath.join(current, part)
        _mkdir_private(sftp, current, exist_ok=True)
    work_dir = worker.operation_dir(home, operation_id)
    _mkdir_private(sftp, work_dir, exist_ok=False)
    return work_dir


def write_private(sftp: paramiko.SFTPClient, path: str, data: bytes, mode: int = 0o600) -> None:
    """A new file readable by the user only from its first byte (O_EXCL, the mode in the OPEN)."""
    try:
        with open_exclusive(sftp, path, mode) as handle:
            handle.write(data)
    except OSError as exc:
        raise map_sftp_error(exc, path, "write") from None


def replace_private(sftp: paramiko.SFTPClient, path: str, data: bytes) -> None:
    """Rewrite a small private file whole (write a new name, then rename over the old one)."""
    fresh = f"{path}.{secrets.token_hex(4)}"
    write_private(sftp, fresh, data)
    try:
        sftp.posix_rename(fresh, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            sftp.remove(fresh)
        raise map_sftp_error(exc, path, "write") from None


def initial_progress() -> bytes:
    return format_progress(Progress(state="queued", updated=int(time.time()))).encode()


def prepare_worker(sftp: paramiko.SFTPClient, operation_id: str, params: bytes) -> str:
    """The operation's folder with run.sh, its parameters and a first progress file."""
    work_dir = make_work_dir(sftp, operation_id)
    write_private(sftp, posixpath.join(work_dir, "run.sh"), worker.RUN_SCRIPT.encode(), 0o700)
    write_private(sftp, posixpath.join(work_dir, "params"), params)
    write_private(sftp, posixpath.join(work_dir, "progress"), initial_progress())
    return work_dir


def prepare_receiver(sftp: paramiko.SFTPClient, operation_id: str, path: str, to: str) -> str:
    """On the destination of a copy between clusters: the folder with recv.sh and its parameters.

    On clusters that share home directories it is the source's folder too: the files differ by name.
    """
    home = sftp.normalize(".")
    work_dir = worker.operation_dir(home, operation_id)
    if lstat_or_none(sftp, work_dir) is None:
        work_dir = make_work_dir(sftp, operation_id)
    # the archive holds the source's last component; recv.sh renames it to the target
    params = worker.receive_params(to, worker.temp_path(to, operation_id), posixpath.basename(path))
    write_private(sftp, posixpath.join(work_dir, "recv.sh"), worker.RECEIVE_SCRIPT.encode(), 0o700)
    write_private(sftp, posixpath.join(work_dir, "recv_params"), params)
    return work_dir


def remove_tree(access: ClusterAccess, path: str, timeout: float) -> bool:
    """``rm -r -f`` of a folder or partial copy as the user; False if it failed (best effort)."""
    try:
        return access.run(worker.remove_argv(path), timeout=timeout).ok
    except Exception:  # clean-up never hides the failure that made it necessary
        log.warning("could not remove %s on %s", path, access.cluster.name, exc_info=True)
        return False


# ------------------------------------------------------------------------------------------- start


def launch(access: ClusterAccess, work_dir: str) -> Started:
    """Start run.sh: a Slurm job in the cluster's transfer partition, or detached on the login node."""
    settings = access.cluster.settings
    if settings.transfer_partition:
        result = access.run(
            worker.sbatch_argv(work_dir, settings.transfer_partition, settings.transfer_time_limit)
        )
        job_id = parse_job_id(result.text()) if result.ok else None
        if job_id is None:
            raise WorkerNotStarted(f"sbatch refused the operation: {result.error_text()[:300]}")
        return Started(work_dir, "job", job_id=job_id)
    result = access.run(worker.detach_argv(work_dir))
    pid = parse_pid(result.text()) if result.ok else None
    if pid is None:
        raise WorkerNotStarted(f"the operation could not be started: {result.error_text()[:300]}")
    return Started(work_dir, "detached", pid=pid)


def start_local(
    access: ClusterAccess, operation_id: str, kind: str, path: str, to: str | None, cleanup_timeout: float
) -> Started:
    """Check like the synchronous routes, write the worker's folder, start it. Nothing is left behind
    on the cluster when it does not start."""
    path = validate_path(path)
    to = validate_path(to, name="to") if to is not None else None
    with access.sftp() as sftp:
        check_local(sftp, kind, path, to)
        temp = worker.temp_path(to, operation_id) if to is not None else None
        work_dir = prepare_worker(sftp, operation_id, worker.run_params(kind, path, to, temp))
    try:
        return launch(access, work_dir)
    except Exception:
        remove_tree(access, work_dir, cleanup_timeout)
        raise


# ------------------------------------------------------------------------------------------- read


def read_progress(sftp: paramiko.SFTPClient, work_dir: str) -> Progress | None:
    """The worker's last progress, or None if there is no readable file (yet, or any more)."""
    try:
        with sftp.open(posixpath.join(work_dir, "progress"), "rb") as handle:
            text = handle.read(PROGRESS_CAP)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise map_sftp_error(exc, work_dir, "read the progress of") from None
    return parse_progress(text.decode("utf-8", "replace"))


def worker_alive(access: ClusterAccess, runner: str, job_id: str | None, pid: int | None, operation_id: str):
    """Whether the job or process still exists (a relay's only sign of life is its progress)."""
    if runner == "job" and job_id:
        result = access.run(worker.job_alive_argv(job_id))
        if not result.ok:
            # squeue forgets a job MinJobAge after it ends, and then says "Invalid job id"
            return "Invalid job id" not in result.error_text()
        return bool(result.text().strip())
    if runner == "detached" and pid:
        result = access.run(worker.process_alive_argv(pid))
        return result.ok and operation_id in result.text()
    return False


def current_progress(
    access: ClusterAccess,
    operation_id: str,
    work_dir: str,
    runner: str,
    job_id: str | None,
    pid: int | None,
    stale_after: float,
) -> Progress | None:
    """Where the operation stands now: the progress file, and, when the file has not moved for
    ``stale_after`` seconds, whether its worker still exists (one that died without a word failed)."""
    with access.sftp() as sftp:
        progress = read_progress(sftp, work_dir)
        if progress is not None and progress.final:
            return progress
        updated = progress.updated if progress is not None else None
        if updated is not None and time.time() - updated < stale_after:
            return progress
        if worker_alive(access, runner, job_id, pid, operation_id):
            return progress
        # it may have written its last word between the two looks
        again = read_progress(sftp, work_dir)
    if again is not None and again.final:
        return again
    what = {"job": f"Slurm job {job_id}", "detached": f"process {pid}"}.get(runner, "the relaying service")
    known = again or progress or Progress(state="failed")
    return Progress(
        state="failed",
        bytes_done=known.bytes_done,
        bytes_total=known.bytes_total,
        files_done=known.files_done,
        files_total=known.files_total,
        error=f"{what} ended without finishing the operation",
    )


# ------------------------------------------------------------------------------------------ cancel


def request_cancel(
    access: ClusterAccess, work_dir: str, runner: str, job_id: str | None, pid: int | None
) -> Progress | None:
    """Ask the worker to stop (a ``cancel`` mark, then scancel or TERM to its process group) and wait
    up to CANCEL_WAIT for its last word; raises OperationFinished if it had already ended."""
    with access.sftp() as sftp:
        progress = read_progress(sftp, work_dir)
        if progress is not None and progress.final:
            raise OperationFinished(f"the operation already ended ({progress.state})")
        with contextlib.suppress(OSError):
            write_private(sftp, posixpath.join(work_dir, "cancel"), b"")
    argv = worker.cancel_argv(job_id=job_id, pid=pid)
    if argv is not None:
        access.run(argv)
    if runner == "job" and (progress is None or progress.state == "queued"):
        # a pending job never started its script: nothing will write a last word (if it was starting
        # just now, its trap removes its partial copy, and so does the caller's sweep)
        return progress
    deadline = time.monotonic() + CANCEL_WAIT
    with access.sftp() as sftp:
        while True:
            progress = read_progress(sftp, work_dir)
            if progress is not None and progress.final:
                return progress
            if time.monotonic() > deadline:
                return progress
            time.sleep(0.25)


def mark_cancelled(access: ClusterAccess, work_dir: str, last: Progress | None) -> None:
    """Write the final word a worker that was stopped before it could may not have written."""
    last = last or Progress(state="cancelled")
    final = Progress(
        state="cancelled",
        bytes_done=last.bytes_done,
        bytes_total=last.bytes_total,
        files_done=last.files_done,
        files_total=last.files_total,
        updated=int(time.time()),
        error="cancelled",
    )
    with contextlib.suppress(Exception), access.sftp() as sftp:
        replace_private(sftp, posixpath.join(work_dir, "progress"), format_progress(final).encode())


def sweep(
    access: ClusterAccess,
    operation_id: str,
    work_dir: str,
    timeout: float,
    *,
    destination: ClusterAccess | None = None,
    to: str | None = None,
) -> bool:
    """Remove what an ended operation left on its clusters: its folder (scripts, keys, progress,
    logs; the registry row holds the outcome from now on), the receiver's folder on the destination,
    and a partial copy (``to``'s temporary name) if the worker could not remove it. Best effort."""
    removed = remove_tree(access, work_dir, timeout)
    target = destination or access
    if destination is not None:
        removed = remove_tree(destination, worker.remote_dir(operation_id), timeout) and removed
    if to is not None:
        removed = remove_tree(target, worker.temp_path(to, operation_id), timeout) and removed
    return removed


# ------------------------------------------------------------------------------------ measurements


def measure(access: ClusterAccess, path: str, timeout: float) -> tuple[int | None, int | None]:
    """Bytes (apparent) and entries of a file or tree, by ``du`` on the cluster; None where unknown."""
    size = access.run(worker.size_argv(path), timeout=timeout)
    count = access.run(worker.count_argv(path), timeout=timeout)
    return (
        parse_du(size.text()) if size.ok else None,
        parse_du(count.text()) if count.ok else None,
    )
