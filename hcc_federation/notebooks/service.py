"""A person's notebooks on one cluster: start, get, list, stop (the API the views and other features call).

Every function takes a ``ClusterAccess`` (the cluster as the person), a SQLAlchemy ``sessionmaker``
of the registry and the person's name. Registry writes are short transactions of their own, never
held across SSH: a port or a per-person slot is claimed by an INSERT that the database's key lets
through once, so replicas that start notebooks at the same instant never share one. A notebook's
state moves on when it is read (no background thread that one replica would own).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import posixpath
import random
import secrets
import ssl
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from ..clusters.access import ClusterAccess
from ..errors import DomainError
from ..files.transfer import create_exclusive
from ..jobs.errors import SlurmUnavailable
from ..jobs.parsers import UNAVAILABLE
from ..models import Notebook, NotebookPort, NotebookSlot
from ..models.meta import utcnow
from ..settings import ClusterSettings
from ..timefmt import rfc3339
from . import commands as c
from .errors import (
    InvalidNotebookArgument,
    NoFreePort,
    NotebookCommandFailed,
    NotebookJobRefused,
    NotebookLimitReached,
    NotebookNotFound,
)
from .tls import ServerAnswer, https_get, make_certificate, tls_context

log = logging.getLogger(__name__)

Sessions = Callable[[], Session]
# how a notebook is shown: ``describe`` for /api/v1; the legacy portal passes its own (its object
# carries the token and the pid), so the rules stay here and only the shape is the caller's
Describe = Callable[[ClusterSettings, Notebook, "NotebookStore"], Any]


class NotebookStore:
    """The registry as the notebook service uses it: short sessions of its own, and the key that seals
    each notebook's token (derived from hcc.auth.secret), so that a copy of the database alone does
    not open anyone's notebook.

    Calling it gives a new session (it is a ``Sessions``).
    """

    def __init__(self, sessions: NotebookStore, server_secret: bytes) -> None:
        self._sessions = sessions
        self._aead = AESGCM(
            HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=b"hcc-federation notebook token"
            ).derive(server_secret)
        )

    def __call__(self) -> Session:
        return self._sessions()

    def seal(self, token: str) -> str:
        nonce = os.urandom(12)
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, token.encode(), None)).decode()

    def open(self, sealed: str) -> str:
        raw = base64.urlsafe_b64decode(sealed.encode())
        return self._aead.decrypt(raw[:12], raw[12:], None).decode()


LIVE_STATES = ("pending", "starting", "running")
STATES = (*LIVE_STATES, "stopped", "failed")
# a port taken on the host by something the registry does not know is retried this many times
MAX_PORT_RETRIES = 5
PROBE_TIMEOUT = 5.0
MAX_WORK_DIR = 4096
_rng = random.SystemRandom()


@dataclass(frozen=True, kw_only=True)
class StartRequest:
    """What a person asks for; None takes the cluster's default."""

    mode: str | None = None
    partition: str | None = None
    hours: int | None = None
    cpus: int | None = None
    memory: int | None = None
    work_dir: str | None = None


# -------------------------------------------------------------------------------- validation


def validate_start(request: StartRequest, cs: ClusterSettings) -> StartRequest:
    """The request with defaults filled in; InvalidNotebookArgument naming the field otherwise."""
    if not cs.notebook_modes:
        raise InvalidNotebookArgument(f"notebooks are not enabled on cluster {cs.name}", field="cluster")
    mode = request.mode or cs.notebook_modes[0]
    if mode not in cs.notebook_modes:
        allowed = ", ".join(cs.notebook_modes)
        raise InvalidNotebookArgument(f"mode {mode!r} is not allowed here (allowed: {allowed})", field="mode")
    hours = cs.notebook_max_hours if request.hours is None else request.hours
    if not 1 <= hours <= cs.notebook_max_hours:
        raise InvalidNotebookArgument(f"hours must be 1 to {cs.notebook_max_hours} here", field="hours")
    for name, value, low, high in (
        ("cpus", request.cpus, 1, cs.notebook_max_cpus),
        ("memory", request.memory, 64, cs.notebook_max_memory),
    ):
        if value is None:
            continue
        if mode != "batch":
            raise InvalidNotebookArgument(f"{name} applies to batch mode only", field=name)
        if not low <= value <= high:
            raise InvalidNotebookArgument(f"{name} must be {low} to {high} here", field=name)
    if request.partition is not None:
        if mode != "batch":
            raise InvalidNotebookArgument("partition applies to batch mode only", field="partition")
        if not c.PARTITION_RE.fullmatch(request.partition):
            raise InvalidNotebookArgument("not a partition name", field="partition")
    work_dir = request.work_dir
    if work_dir is not None and (
        not work_dir.startswith("/") or "\x00" in work_dir or len(work_dir) > MAX_WORK_DIR
    ):
        raise InvalidNotebookArgument("work_dir must be an absolute path", field="work_dir")
    return StartRequest(
        mode=mode,
        partition=request.partition,
        hours=hours,
        cpus=request.cpus,
        memory=request.memory,
        work_dir=work_dir,
    )


# -------------------------------------------------------------------------------- registry steps


def _commit_new(sessions: NotebookStore, row) -> bool:
    """INSERT one row in a transaction of its own: False when a key refused it (or a deadlock did)."""
    with sessions() as db:
        db.add(row)
        try:
            db.commit()
            return True
        except IntegrityError:
            db.rollback()
            return False
        except OperationalError as exc:
            # InnoDB may pick one of several inserters of one key as a deadlock victim: taken for now
            db.rollback()
            if getattr(exc.orig, "args", (None,))[0] in (1205, 1213):
                return False
            raise


def _claim_slot(sessions: NotebookStore, cs: ClusterSettings, username: str, notebook_id: str) -> bool:
    for slot in range(cs.notebook_max_per_user):
        claim = NotebookSlot(cluster=cs.name, username=username, slot=slot, notebook_id=notebook_id)
        if _commit_new(sessions, claim):
            return True
    return False


def _claim_port(sessions: NotebookStore, cs: ClusterSettings, host: str, notebook_id: str, avoid=()) -> int:
    """A port of the cluster's range claimed on ``host`` for the notebook; NoFreePort if none is left."""
    with sessions() as db:
        held = set(db.scalars(select(NotebookPort.port).where(NotebookPort.host == host)))
    low, high = cs.notebook_ports
    # the registry's view only orders the candidates: the INSERT decides
    for port in c.candidate_ports(low, high, held | set(avoid), _rng):
        if port in avoid:
            continue
        if _commit_new(sessions, NotebookPort(host=host, port=port, notebook_id=notebook_id)):
            return port
    raise NoFreePort(f"no free notebook port on {host} (range {low}-{high}); try again later")


def _release(db: Session, notebook_id: str) -> None:
    db.execute(delete(NotebookPort).where(NotebookPort.notebook_id == notebook_id))
    db.execute(delete(NotebookSlot).where(NotebookSlot.notebook_id == notebook_id))


# what a notebook's folder keeps that only a live server needs; its logs stay for the person to read
SECRETS = ("token", "key.pem")


def _forget_secrets(access: ClusterAccess, nb: Notebook) -> None:
    """Remove the token and private key of a notebook that ended (best effort: the folder is 0700)."""
    try:
        with access.sftp() as sftp:
            for name in SECRETS:
                with contextlib.suppress(OSError):
                    sftp.remove(f"{nb.folder}/{name}")
    except DomainError:
        log.warning("could not remove the secrets of notebook %s on %s", nb.id, nb.cluster)


def _finish(sessions: NotebookStore, notebook_id: str, state: str, error: str | None = None) -> None:
    """Move a live notebook to stopped or failed and free its port and slot, in one transaction."""
    with sessions() as db, db.begin():
        db.execute(
            update(Notebook)
            .where(Notebook.id == notebook_id, Notebook.state.in_(LIVE_STATES))
            .values(state=state, error=error[:4000] if error else None, stopped_at=utcnow(), reason=None)
        )
        _release(db, notebook_id)


def _set(sessions: NotebookStore, notebook_id: str, **values) -> None:
    """Update a notebook that is still live (a concurrent stop is never undone)."""
    with sessions() as db, db.begin():
        db.execute(
            update(Notebook)
            .where(Notebook.id == notebook_id, Notebook.state.in_(LIVE_STATES))
            .values(**values)
        )


def _load(sessions: NotebookStore, cluster: str, username: str, notebook_id: str) -> Notebook:
    with sessions() as db:
        row = db.get(Notebook, notebook_id) if c.ID_RE.fullmatch(notebook_id or "") else None
        # another person's notebook is not found: its existence and token never leak
        if row is None or row.username != username or row.cluster != cluster:
            raise NotebookNotFound(f"no notebook {notebook_id[:40]!r} of yours on this cluster")
        db.expunge(row)
        return row


# -------------------------------------------------------------------------------- remote steps


def _checked(access: ClusterAccess, argv: list[str], what: str, stdin: bytes | None = None) -> str:
    result = access.run(argv, stdin=stdin)
    if not result.ok:
        detail = (result.error_text() or result.text()).strip()[-500:]
        raise NotebookCommandFailed(f"{what} failed on {access.cluster.name}: {detail or 'no message'}")
    return result.text()


def _home_and_work_dir(access: ClusterAccess, work_dir: str | None) -> tuple[str, str]:
    with access.sftp() as sftp:
        home = sftp.normalize(".")
        work_dir = work_dir or home
        try:
            mode = sftp.stat(work_dir).st_mode
        except OSError:
            mode = None
    if mode is None or not stat.S_ISDIR(mode):
        raise InvalidNotebookArgument(
            f"work_dir {work_dir[:200]!r} is not a directory of yours", field="work_dir"
        )
    return home, work_dir


def _prepare_folder(access: ClusterAccess, folder: str, files: dict[str, bytes]) -> None:
    """The notebook's folder, 0700 (so its files are the person's alone before any chmod), and its files."""
    with access.sftp() as sftp:
        parent = posixpath.dirname(folder)
        with contextlib.suppress(OSError):  # it exists (an earlier notebook)
            sftp.mkdir(parent, 0o700)
        sftp.chmod(parent, 0o700)
        sftp.mkdir(folder, 0o700)
        sftp.chmod(folder, 0o700)
        for name, data in files.items():
            # 0600 from the first byte (the mode travels in the OPEN), as the uploads' own files
            with create_exclusive(sftp, f"{folder}/{name}", 0o600) as handle:
                handle.write(data)


def _tls_paths(cs: ClusterSettings, folder: str) -> tuple[str, str]:
    if cs.notebook_certfile and cs.notebook_keyfile:
        return cs.notebook_certfile, cs.notebook_keyfile
    return f"{folder}/cert.pem", f"{folder}/key.pem"


def _start_login(access: ClusterAccess, nb: Notebook) -> int:
    cs = access.cluster.settings
    argv = c.login_start_argv(
        nb.folder,
        nb.port,
        nb.work_dir,
        cs.notebook_command,
        c.server_arguments(nb.folder, _tls_paths(cs, nb.folder), ip="127.0.0.1"),
    )
    out = _checked(
        access, argv, "starting the notebook server", stdin=c.login_start_script(cs.notebook_command_prefix)
    )
    pid = c.parse_pid(out)
    if pid is None:
        raise NotebookCommandFailed(f"the notebook launcher on {cs.name} printed no pid")
    return pid


def _job_template(cs: ClusterSettings) -> str:
    if cs.notebook_job_template:
        with open(cs.notebook_job_template, encoding="utf-8") as handle:
            return handle.read()
    return c.DEFAULT_JOB_TEMPLATE


def _start_batch(access: ClusterAccess, nb: Notebook, hours: int) -> str:
    cs = access.cluster.settings
    script = c.render_job_script(
        _job_template(cs),
        cs.notebook_command_prefix,
        cs.notebook_command,
        c.server_arguments(nb.folder, _tls_paths(cs, nb.folder)),
    )
    argv = c.sbatch_argv(nb.folder, hours, nb.partition, nb.cpus, nb.memory)
    result = access.run(argv, stdin=script.encode())
    job_id = c.parse_job_id(result.text()) if result.ok else None
    if job_id is None:
        detail = (result.error_text() or result.text()).strip()[-500:] or "no message"
        if UNAVAILABLE.search(detail):
            raise SlurmUnavailable(f"Slurm is not answering (sbatch): {detail}")
        raise NotebookJobRefused(f"sbatch refused the notebook job: {detail}")
    return job_id


def _check_partition(access: ClusterAccess, partition: str) -> None:
    out = _checked(access, c.partition_argv(partition), "sinfo")
    if partition not in c.parse_partitions(out):
        raise InvalidNotebookArgument(
            f"no partition {partition!r} on {access.cluster.name}", field="partition"
        )


def start_notebook(
    access: ClusterAccess,
    sessions: NotebookStore,
    username: str,
    request: StartRequest,
    client_addr: str = "",
    shown_as: Describe | None = None,
) -> dict:
    """Start a notebook as ``username`` and return it (``pending`` or ``starting``) at once, as
    ``shown_as`` (default ``describe``) shows it.

    Raises InvalidNotebookArgument (a field outside what the cluster allows), NotebookLimitReached
    (the person's cap), NoFreePort (the range is used up on that host) or NotebookCommandFailed.
    """
    cs = access.cluster.settings
    request = validate_start(request, cs)
    if request.partition:
        _check_partition(access, request.partition)
    home, work_dir = _home_and_work_dir(access, request.work_dir)
    host = _checked(access, c.hostname_argv(), "hostname").strip() if request.mode == "login" else None
    notebook_id = secrets.token_hex(16)
    token = secrets.token_urlsafe(32)
    folder = f"{home}/{c.NOTEBOOKS_DIR}/{notebook_id}"
    certificate = (
        None if cs.notebook_certfile else make_certificate(f"hcc-notebook-{notebook_id[:8]}", request.hours)
    )
    now = utcnow()
    nb = Notebook(
        id=notebook_id,
        username=username,
        cluster=cs.name,
        mode=request.mode,
        state="starting" if request.mode == "login" else "pending",
        host=host,
        address="127.0.0.1" if request.mode == "login" else None,
        token=sessions.seal(token),
        folder=folder,
        work_dir=work_dir,
        partition=request.partition,
        cpus=request.cpus,
        memory=request.memory,
        certificate=certificate.cert_pem.decode() if certificate else None,
        attempt=0,
        created_at=now,
        expires_at=now + timedelta(hours=request.hours),
        client_addr=client_addr[:45],
    )
    if not _commit_new(sessions, nb):
        raise NotebookCommandFailed("could not record the notebook")
    try:
        if not _claim_slot(sessions, cs, username, notebook_id):
            raise NotebookLimitReached(
                f"you already have {cs.notebook_max_per_user} live notebooks on {cs.name}; stop one first"
            )
        files = {"token": token.encode(), "work_dir": work_dir.encode()}
        if certificate:
            files |= {"cert.pem": certificate.cert_pem, "key.pem": certificate.key_pem}
        if request.mode == "login":
            nb.port = _claim_port(sessions, cs, host, notebook_id)
            _set(sessions, notebook_id, port=nb.port)
        else:
            with sessions() as db:
                held = set(db.scalars(select(NotebookPort.port)))
            low, high = cs.notebook_ports
            files["ports"] = " ".join(map(str, c.candidate_ports(low, high, held, _rng))).encode()
    except (NotebookLimitReached, NoFreePort):
        # refused before anything ran: nothing to keep
        with sessions() as db, db.begin():
            _release(db, notebook_id)
            db.execute(delete(Notebook).where(Notebook.id == notebook_id))
        raise
    try:
        _prepare_folder(access, folder, files)
        if request.mode == "login":
            _set(sessions, notebook_id, pid=_start_login(access, nb))
        else:
            _set(sessions, notebook_id, job_id=_start_batch(access, nb, request.hours))
    except Exception as exc:
        _finish(sessions, notebook_id, "failed", getattr(exc, "description", None) or type(exc).__name__)
        raise
    log.info("notebook %s (%s) started on %s by %s", notebook_id, request.mode, cs.name, username)
    return (shown_as or describe)(cs, _reload(sessions, notebook_id), sessions)


def _reload(sessions: NotebookStore, notebook_id: str) -> Notebook:
    with sessions() as db:
        row = db.get(Notebook, notebook_id)
        db.expunge(row)
        return row


# -------------------------------------------------------------------------------- reading


def probe_server(
    access: ClusterAccess, nb: Notebook, token: str, path: str = "/api/status"
) -> ServerAnswer | None:
    """The server's answer to ``path`` with the notebook's token, through the cluster's SSH connection
    (a direct-tcpip channel from the login node); None when nothing answers there (yet)."""
    if not nb.host or not nb.port:
        return None
    dial = nb.address or nb.host
    try:
        with access.open_tunnel(dial, nb.port, timeout=PROBE_TIMEOUT) as channel:
            return https_get(
                channel, path, token, f"{nb.host}:{nb.port}", tls_context(nb.certificate), PROBE_TIMEOUT
            )
    except (OSError, ssl.SSLError, ValueError):
        # refused, reset, a TLS failure or not HTTP: no server of ours answers there
        return None


def _start_in_progress(access: ClusterAccess, nb: Notebook) -> bool:
    """Whether a replica may still be starting it (no pid or job id recorded yet, and not for long)."""
    grace = timedelta(seconds=3 * access.cluster.settings.command_timeout + 30)
    return utcnow() - nb.created_at < grace


def _refresh_login(access: ClusterAccess, sessions: NotebookStore, nb: Notebook) -> None:
    if not nb.pid:
        if not _start_in_progress(access, nb):
            _finish(sessions, nb.id, "failed", "the start did not complete")
        return
    alive, log_tail = c.parse_login_status(access.run(c.login_status_argv(nb.pid, nb.folder)).text())
    if alive:
        # probe only once the server says it listens: a refused tunnel is an ERROR line in paramiko's log
        if nb.state != "running" and c.SERVER_LISTENING.search(log_tail):
            answer = probe_server(access, nb, sessions.open(nb.token))
            if answer is not None and answer.status == 200:
                _set(sessions, nb.id, state="running", started_at=utcnow())
        return
    if nb.state == "running":
        _finish(sessions, nb.id, "stopped", "the server ended: " + log_tail.strip()[-1000:])
    elif c.PORT_IN_USE.search(log_tail) and nb.attempt < MAX_PORT_RETRIES:
        _retry_port(access, sessions, nb)
    else:
        _finish(sessions, nb.id, "failed", log_tail.strip()[-4000:] or "the server ended without a word")


def _retry_port(access: ClusterAccess, sessions: NotebookStore, nb: Notebook) -> None:
    """Something outside the registry holds the port on the host: start again on another one.

    Compare-and-set on ``attempt``: of two replicas reading the notebook at once, one retries.
    """
    with sessions() as db, db.begin():
        won = db.execute(
            update(Notebook)
            .where(Notebook.id == nb.id, Notebook.attempt == nb.attempt, Notebook.state == "starting")
            .values(attempt=nb.attempt + 1, pid=None)
        ).rowcount
        if won:
            db.execute(delete(NotebookPort).where(NotebookPort.notebook_id == nb.id))
    if not won:
        return
    log.info("notebook %s: port %s taken on %s, trying another", nb.id, nb.port, nb.host)
    try:
        nb.port = _claim_port(sessions, access.cluster.settings, nb.host, nb.id, avoid={nb.port})
        _set(sessions, nb.id, port=nb.port)
        _set(sessions, nb.id, pid=_start_login(access, nb))
    except Exception as exc:
        _finish(sessions, nb.id, "failed", getattr(exc, "description", None) or type(exc).__name__)


def _read_file(access: ClusterAccess, path: str, limit: int = c.LOG_TAIL_BYTES) -> str:
    try:
        with access.sftp() as sftp, sftp.open(path, "rb") as handle:
            size = handle.stat().st_size
            if size > limit:
                handle.seek(size - limit)
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def _refresh_batch(access: ClusterAccess, sessions: NotebookStore, nb: Notebook) -> None:
    if not nb.job_id:
        if not _start_in_progress(access, nb):
            _finish(sessions, nb.id, "failed", "the start did not complete")
        return
    result = access.run(c.squeue_job_argv(nb.job_id))
    if not result.ok and "Invalid job id" not in result.error_text():
        # Slurm not answering is not a job that ended: the notebook stays as it was
        detail = result.error_text().strip()[-500:] or "no message"
        if UNAVAILABLE.search(detail):
            raise SlurmUnavailable(f"Slurm is not answering (squeue): {detail}")
        raise NotebookCommandFailed(f"squeue failed on {access.cluster.name}: {detail}")
    queued = c.parse_squeue_job(result.text()) if result.ok else None
    if queued is None or queued[0] not in (
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "REQUEUED",
        "RESIZING",
        "SUSPENDED",
    ):
        # out of the queue, or finishing: it ended
        output = _read_file(access, f"{nb.folder}/job.out").strip()
        if nb.state == "running":
            _finish(sessions, nb.id, "stopped", "the job ended: " + output[-1000:])
        else:
            final = (
                c.parse_sacct_state(access.run(c.sacct_job_argv(nb.job_id)).text())
                or (queued or ("gone",))[0]
            )
            _finish(
                sessions, nb.id, "failed", f"the job ended ({final}) before the server answered: {output}"
            )
        return
    state, reason = queued
    if state != "RUNNING":
        if nb.state != "pending" or nb.reason != reason[:255]:
            _set(sessions, nb.id, state="pending", reason=reason[:255])
        return
    if nb.state == "running":
        return  # the job runs the server and ends with it
    where = _read_file(access, f"{nb.folder}/server", 800).split()
    if len(where) != 3 or not where[1].isdigit():
        _set(sessions, nb.id, state="starting", reason=None)
        return
    host, port, address = where[0][:255], int(where[1]), where[2][:255]
    if (host, port, address) != (nb.host, nb.port, nb.address):
        _set(sessions, nb.id, host=host, port=port, address=address)
        nb.host, nb.port, nb.address = host, port, address
    listening = c.SERVER_LISTENING.search(_read_file(access, f"{nb.folder}/server.log"))
    answer = probe_server(access, nb, sessions.open(nb.token)) if listening else None
    if answer is None or answer.status != 200:
        _set(sessions, nb.id, state="starting", reason=None)
        return
    # the server listens there: claim (host, port) in the registry before calling it running
    claimed = _commit_new(sessions, NotebookPort(host=host, port=port, notebook_id=nb.id))
    if not claimed:
        with sessions() as db:
            holder = db.get(NotebookPort, (host, port))
            claimed = holder is not None and holder.notebook_id == nb.id
    if claimed:
        _set(sessions, nb.id, state="running", started_at=utcnow(), reason=None)
    else:
        _set(
            sessions,
            nb.id,
            state="starting",
            reason=f"port {port} on {host} is still claimed by another notebook",
        )


def refresh(
    access: ClusterAccess, sessions: NotebookStore, nb: Notebook, now: datetime | None = None
) -> Notebook:
    """Move a live notebook's state on from what the cluster says now; stop it past its maximum age."""
    if nb.state not in LIVE_STATES:
        return nb
    if (now or utcnow()) >= nb.expires_at:
        _stop_remote(access, nb)
        _finish(sessions, nb.id, "stopped", "the notebook reached its maximum age")
    elif nb.mode == "login":
        _refresh_login(access, sessions, nb)
    else:
        _refresh_batch(access, sessions, nb)
    after = _reload(sessions, nb.id)
    if after.state not in LIVE_STATES:
        _forget_secrets(access, after)
    return after


def describe(cs: ClusterSettings, nb: Notebook, store: NotebookStore) -> dict:
    """The notebook as the API shows it to its owner (the url carries the token)."""
    url = None
    if nb.host and nb.port and nb.state in LIVE_STATES:
        url = c.notebook_url(cs.notebook_url, nb.host, nb.port, store.open(nb.token))
    return {
        "id": nb.id,
        "cluster": nb.cluster,
        "mode": nb.mode,
        "state": nb.state,
        "host": nb.host,
        "port": nb.port,
        "url": url,
        "job_id": nb.job_id,
        "reason": nb.reason,
        "error": nb.error,
        "work_dir": nb.work_dir,
        "created_at": rfc3339(nb.created_at),
        "started_at": rfc3339(nb.started_at),
        "expires_at": rfc3339(nb.expires_at),
        "stopped_at": rfc3339(nb.stopped_at),
    }


def get_notebook(access: ClusterAccess, sessions: NotebookStore, username: str, notebook_id: str) -> dict:
    """One of the person's notebooks on the cluster, its state brought up to date; NotebookNotFound."""
    nb = _load(sessions, access.cluster.name, username, notebook_id)
    return describe(access.cluster.settings, refresh(access, sessions, nb), sessions)


def list_notebooks(
    access: ClusterAccess,
    sessions: NotebookStore,
    username: str,
    limit: int = 100,
    shown_as: Describe | None = None,
) -> list[dict]:
    """The person's notebooks on the cluster, newest first, the live ones brought up to date, as
    ``shown_as`` (default ``describe``) shows each."""
    with sessions() as db:
        rows = list(
            db.scalars(
                select(Notebook)
                .where(Notebook.username == username, Notebook.cluster == access.cluster.name)
                .order_by(Notebook.created_at.desc())
                .limit(limit)
            )
        )
        db.expunge_all()
    show = shown_as or describe
    return [show(access.cluster.settings, refresh(access, sessions, nb), sessions) for nb in rows]


def _stop_remote(access: ClusterAccess, nb: Notebook) -> None:
    if nb.mode == "login" and nb.pid:
        _checked(access, c.login_stop_argv(nb.pid, nb.folder), "stopping the notebook server")
    elif nb.mode == "batch" and nb.job_id:
        result = access.run(c.scancel_argv(nb.job_id))
        text = result.error_text()
        if not result.ok and "already completing or completed" not in text and "Invalid job id" not in text:
            raise NotebookCommandFailed(f"scancel failed on {access.cluster.name}: {text.strip()[-500:]}")


def stop_notebook(access: ClusterAccess, sessions: NotebookStore, username: str, notebook_id: str) -> None:
    """End the server (cancel the job or end the process) and free its port; a stopped one stays stopped."""
    nb = _load(sessions, access.cluster.name, username, notebook_id)
    if nb.state not in LIVE_STATES:
        return
    _stop_remote(access, nb)
    _finish(sessions, nb.id, "stopped")
    _forget_secrets(access, nb)
    log.info("notebook %s stopped on %s by %s", nb.id, nb.cluster, username)


def refresh_live(
    access_for: Callable[[Notebook], ClusterAccess | None],
    sessions: NotebookStore,
    now: datetime | None = None,
) -> dict[str, int]:
    """hcc-cleanup's pass: bring every live notebook up to date as its owner, stopping the expired.

    ``access_for(nb)`` gives the cluster as the notebook's owner, or None when the service holds no
    credential for them (password clusters: then the owner's next read stops an expired notebook).
    """
    with sessions() as db:
        rows = list(db.scalars(select(Notebook).where(Notebook.state.in_(LIVE_STATES))))
        db.expunge_all()
    counts = {"expired": 0, "ended": 0, "skipped": 0, "failed": 0}
    now = now or utcnow()
    for nb in rows:
        access = access_for(nb)
        if access is None:
            counts["skipped"] += 1
            continue
        try:
            after = refresh(access, sessions, nb, now=now)
        except Exception:
            log.exception("hcc-cleanup could not check notebook %s on %s", nb.id, nb.cluster)
            counts["failed"] += 1
            continue
        if after.state == "stopped" and now >= nb.expires_at:
            counts["expired"] += 1
        elif after.state not in LIVE_STATES:
            counts["ended"] += 1
    return counts
