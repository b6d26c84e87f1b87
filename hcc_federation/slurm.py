"""Slurm jobs as one user sees them: argv builders, pure parsers and a client that runs them."""

from __future__ import annotations

import json
import posixpath
import re
import secrets
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hcc_federation.errors import BadRequest, Conflict, Forbidden, NotFound, ServiceError
from hcc_federation.remote.result import CommandResult

# Runs argv as the user on the cluster's login node: (argv, stdin, timeout) -> result.
Runner = Callable[[Sequence[str], bytes | None, float | None], CommandResult]

Job = dict[str, Any]

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class SlurmError(ServiceError):
    """Slurm failed in a way the client cannot fix (a command failed, or printed what we cannot read)."""

    status = 502
    location = "path"
    name = "cluster"


class SlurmUnavailable(SlurmError):
    """The controller or the accounting daemon did not answer."""

    status = 503


class SlurmBadRequest(SlurmError, BadRequest):
    """An argument was refused before anything ran (bad job id, date, state, path...)."""

    # Both bases define these: say which wins (SlurmError comes first in the MRO).
    status = 400
    location = "querystring"
    name = "error"


class SlurmRefused(SlurmError, BadRequest):
    """sbatch refused the job; the description is Slurm's own message."""

    status = 400
    location = "body"
    name = "script"


class JobNotFound(SlurmError, NotFound):
    status = 404
    location = "path"
    name = "job_id"


class JobForbidden(SlurmError, Forbidden):
    status = 403
    location = "path"
    name = "job_id"


class JobFinished(SlurmError, Conflict):
    status = 409
    location = "path"
    name = "job_id"


# --------------------------------------------------------------------------------------------
# Validation: everything that reaches argv is checked here first
# --------------------------------------------------------------------------------------------

# Plain 123, array task 123_4, heterogeneous component 123+1; ASCII digits only ([0-9], not \d,
# which would accept other scripts' digits) and fullmatch, so a trailing newline cannot slip in.
_JOB_ID = re.compile(r"[0-9]{1,10}(?:_[0-9]{1,10}|\+[0-9]{1,5})?")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# A Slurm hostlist expression as squeue prints it ("n1", "n[01-04,7]", "a1,b2").
_HOSTLIST = re.compile(r"[A-Za-z0-9._\-\[\],]{1,4096}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Every base job state of Slurm 22.05 (slurm.h job_state_string), which is what we report.
JOB_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "COMPLETING",
        "CONFIGURING",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PENDING",
        "PREEMPTED",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "REVOKED",
        "RUNNING",
        "SIGNALING",
        "SPECIAL_EXIT",
        "STAGE_OUT",
        "STOPPED",
        "SUSPENDED",
        "TIMEOUT",
    }
)
# The subset `sacct --state` understands; for anything else we filter on our side only.
_SACCT_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PENDING",
        "PREEMPTED",
        "REQUEUED",
        "RESIZING",
        "REVOKED",
        "RUNNING",
        "SUSPENDED",
        "TIMEOUT",
    }
)
# States after which a job can no longer be cancelled and has an exit code.
FINISHED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)

DEFAULT_SINCE_DAYS = 7
MAX_LIMIT = 10_000
MAX_NAME_LENGTH = 200
TOP_PROCESSES = 10


def validate_job_id(job_id: object) -> str:
    """Return ``job_id`` if it is ``123``, ``123_4`` or ``123+1``; else ``SlurmBadRequest`` (400)."""
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise SlurmBadRequest(
            "job id must look like 123, 123_4 (array task) or 123+1 (heterogeneous component)",
            location="path",
            name="job_id",
        )
    return job_id


def validate_user(user: object) -> str:
    if not isinstance(user, str) or not _USER.fullmatch(user):
        raise SlurmBadRequest("invalid user name", location="path", name="user")
    return user


def validate_since(since: date | str | None, *, today: date | None = None) -> str:
    """``YYYY-MM-DD`` for ``sacct -S``; None means ``DEFAULT_SINCE_DAYS`` days ago."""
    if since is None:
        return ((today or date.today()) - timedelta(days=DEFAULT_SINCE_DAYS)).isoformat()
    if isinstance(since, date):
        return since.isoformat()
    if isinstance(since, str) and _DATE.fullmatch(since):
        try:
            return date.fromisoformat(since).isoformat()
        except ValueError:
            pass
    raise SlurmBadRequest("since must be a date YYYY-MM-DD", name="since")


def validate_states(states: Iterable[str] | None) -> frozenset[str] | None:
    """Upper-cased Slurm state names (``running``, ``PENDING``...); unknown names are a 400."""
    if states is None:
        return None
    if isinstance(states, str):
        states = [states]
    wanted = set()
    for state in states:
        name = state.strip().upper() if isinstance(state, str) else ""
        if name not in JOB_STATES:
            raise SlurmBadRequest(
                f"unknown job state {state!r}; expected one of {', '.join(sorted(JOB_STATES))}",
                name="states",
            )
        wanted.add(name)
    return frozenset(wanted) or None


def validate_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise SlurmBadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", name="limit")
    return limit


def validate_absolute_path(path: object, *, name: str) -> str:
    """An absolute path with no NUL (argv cannot carry one); the remote side decides if it exists."""
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path or len(path) > 4096:
        raise SlurmBadRequest(f"{name} must be an absolute path", location="body", name=name)
    return path


def validate_job_name(name: object) -> str:
    # Slurm itself takes any byte but NUL (even newlines); we refuse control characters in the
    # names we submit so they cannot forge lines in logs or terminals.
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH or _CONTROL.search(name):
        raise SlurmBadRequest(
            f"name must be 1 to {MAX_NAME_LENGTH} characters without control characters",
            location="body",
            name="name",
        )
    return name


# --------------------------------------------------------------------------------------------
# argv builders (pure)
# --------------------------------------------------------------------------------------------

# Job names and work dirs may contain any byte but NUL, including newlines and every separator
# (checked on 22.05: "|", tab, \x1f, \x1e, "\n" all round-trip through sbatch and squeue), so no
# fixed delimiter is safe. We use a fresh random one per call (a user would have to guess it) and
# parse records anchored on the job id, which is always the first field and never has a newline.
SACCT_JOB_FIELDS = (
    "JobID",
    "JobIDRaw",
    "JobName",
    "State",
    "Reason",
    "Partition",
    "Account",
    "User",
    "Submit",
    "Start",
    "End",
    "ElapsedRaw",
    "TimelimitRaw",
    "NNodes",
    "NodeList",
    "AllocCPUS",
    "ReqCPUS",
    "ReqTRES",
    "WorkDir",
    "ExitCode",
    "NTasks",
    "MaxRSS",
)
# The REST contract's job fields, in order (detail adds steps, script and usage).
JOB_FIELDS = (
    "id",
    "name",
    "state",
    "reason",
    "partition",
    "account",
    "user",
    "submit_time",
    "start_time",
    "end_time",
    "elapsed_seconds",
    "time_limit_seconds",
    "node_count",
    "nodes",
    "cpus",
    "memory",
    "work_dir",
    "exit_code",
)
SSTAT_FIELDS = ("JobID", "AveCPU", "AveRSS", "MaxRSS", "MaxRSSNode", "NTasks", "NodeList", "TRESUsageInTot")


def new_delimiter() -> str:
    """A field delimiter no job name will contain: printable, so it survives any transport."""
    return f"|#{secrets.token_hex(8)}#|"


def _epoch_env() -> list[str]:
    # Times as epoch seconds: sacct otherwise prints the login node's local time without an offset.
    return ["env", "SLURM_TIME_FORMAT=%s"]


def sacct_list_argv(user: str, since: str, delimiter: str, states: frozenset[str] | None = None) -> list[str]:
    """The user's allocations (-X) since a day, one record per job."""
    argv = [
        *_epoch_env(),
        "sacct",
        "--noheader",
        "--parsable2",
        f"--delimiter={delimiter}",
        "--allocations",
        f"--user={user}",
        f"--starttime={since}",
        f"--format={','.join(SACCT_JOB_FIELDS)}",
    ]
    if states and states <= _SACCT_STATES:
        # with --state and no --endtime, sacct 22.05 drops the finished jobs that --endtime=now keeps
        argv += [f"--state={','.join(sorted(states))}", "--endtime=now"]
    return argv


def sacct_job_argv(job_id: str, delimiter: str) -> list[str]:
    """One job with its steps; no --user, so another user's job is found (and then refused)."""
    return [
        *_epoch_env(),
        "sacct",
        "--noheader",
        "--parsable2",
        f"--delimiter={delimiter}",
        f"--jobs={job_id}",
        f"--format={','.join(SACCT_JOB_FIELDS)}",
    ]


def squeue_argv(user: str | None = None) -> list[str]:
    # 22.05 ignores every filter with --json (it prints the whole queue, checked with -u, --me and
    # -j), so callers filter again; newer Slurm honours -u and saves the transfer.
    argv = ["squeue", "--json", "--states=all"]
    if user is not None:
        argv.append(f"--user={user}")
    return argv


def batch_script_argv(job_id: str) -> list[str]:
    return ["scontrol", "write", "batch_script", job_id, "-"]


def sstat_argv(job_id: str) -> list[str]:
    # -a: without it sstat prints nothing for a batch job that has no srun steps. sstat has no
    # --delimiter; its "|" is safe because none of SSTAT_FIELDS is free text.
    return [
        "sstat",
        "--allsteps",
        "--noheader",
        "--parsable2",
        f"--jobs={job_id}",
        f"--format={','.join(SSTAT_FIELDS)}",
    ]


# Runs once per node inside the job (a fixed text: the job id comes in as $1, never spliced in).
# listpids names the job's own processes on the node, which matters where one PID namespace holds
# other users' and other jobs' processes; ps then gives their CPU and memory.
PROBE_SCRIPT = (
    'echo "node ${SLURMD_NODENAME:-$(hostname)}"; echo "step ${SLURM_STEP_ID:-}"; '
    'echo "--pids--"; scontrol listpids "$1" 2>/dev/null; '
    'echo "--ps--"; exec ps -U "$(id -u)" -o pid=,pcpu=,rss=,etime=,comm= --sort=-pcpu'
)


def probe_argv(job_id: str, nodes: str, node_count: int) -> list[str]:
    """One task per node of a running job (--overlap: it shares the job's CPUs), output labelled."""
    if not _HOSTLIST.fullmatch(nodes):
        raise SlurmError(f"unexpected node list {nodes!r}")
    return [
        "srun",
        "--overlap",
        "--quiet",
        "--label",
        f"--jobid={job_id}",
        f"--nodelist={nodes}",
        f"--nodes={node_count}",
        "--ntasks-per-node=1",
        f"--ntasks={node_count}",
        "sh",
        "-c",
        PROBE_SCRIPT,
        "sh",
        job_id,
    ]


def sbatch_path_argv(path: str) -> list[str]:
    # Slurm runs the script in its own directory, as a user who typed `sbatch x.sh` there would.
    return ["sbatch", "--parsable", f"--chdir={posixpath.dirname(path) or '/'}", path]


def sbatch_stdin_argv(work_dir: str, name: str | None = None) -> list[str]:
    """sbatch reads the script from stdin when it is given no file."""
    argv = ["sbatch", "--parsable", f"--chdir={work_dir}"]
    if name is not None:
        argv.append(f"--job-name={name}")
    return argv


def scancel_argv(job_id: str) -> list[str]:
    return ["scancel", job_id]


# --------------------------------------------------------------------------------------------
# Parsers (pure)
# --------------------------------------------------------------------------------------------

_UNSET = frozenset({"", "Unknown", "None", "None assigned", "N/A"})
_MEM_UNITS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024, "P": 1024**3}
_BYTE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([KMGTP]?)")


_RECORD_ID = re.compile(r"[0-9][0-9A-Za-z_+.\[\],%-]*")


def split_records(text: str, delimiter: str, field_count: int) -> list[list[str]]:
    """Split ``--parsable2`` output whose fields may hold newlines (names, work dirs).

    Every record has ``field_count`` fields, so ``field_count - 1`` delimiters; the newline that
    ends a record is glued to the next record's first field, which is a job id (never a
    newline), so the last newline of that piece is the record boundary.
    """
    if text.endswith("\n"):
        text = text[:-1]
    if not text:
        return []
    pieces = text.split(delimiter)
    per_record = field_count - 1
    if (len(pieces) - 1) % per_record:
        raise SlurmError("could not parse Slurm's output (unexpected field count)")
    count = (len(pieces) - 1) // per_record
    records: list[list[str]] = []
    first = pieces[0]
    for index in range(count):
        fields = [first, *pieces[1 + index * per_record : 1 + (index + 1) * per_record]]
        if index < count - 1:
            last, newline, first = fields[-1].rpartition("\n")
            if not newline:
                raise SlurmError("could not parse Slurm's output (no record boundary)")
            fields[-1] = last
        if not _RECORD_ID.fullmatch(fields[0]):
            raise SlurmError("could not parse Slurm's output (bad job id field)")
        records.append(fields)
    return records


def _epoch(value: object) -> int | None:
    """Epoch seconds from sacct (with SLURM_TIME_FORMAT=%s) or squeue --json; 0 and words are unset."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value or None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value) or None
    return None


def iso_time(epoch: int | None) -> str | None:
    """ISO 8601 in UTC with its offset, e.g. ``2026-11-30T01:31:32+00:00``."""
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


def _int(value: object, default: int | None = None) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return default


def _text(value: object) -> str | None:
    if not isinstance(value, str) or value in _UNSET:
        return None
    return value


def size_to_mb(value: str) -> int | None:
    """Slurm memory ("1G", "100M", "512K") in MiB; a bare number is already MiB."""
    match = _SIZE.fullmatch(value.strip())
    if not match:
        return None
    return round(float(match.group(1)) * _MEM_UNITS[match.group(2) or "M"])


def size_to_bytes(value: str) -> int | None:
    """sstat/sacct/ps sizes ("3316K", "3M", "0") in bytes."""
    match = _SIZE.fullmatch(value.strip())
    if not match:
        return None
    return round(float(match.group(1)) * _BYTE_UNITS[match.group(2)])


def tres_memory_mb(tres: str) -> int | None:
    """The ``mem=`` of a TRES string (``billing=1,cpu=1,mem=1G,node=1``): memory for the whole job."""
    for item in (tres or "").split(","):
        key, _, value = item.partition("=")
        if key == "mem":
            return size_to_mb(value)
    return None


def tres_value(tres: str, key: str) -> str | None:
    for item in (tres or "").split(","):
        name, _, value = item.partition("=")
        if name == key:
            return value
    return None


_DURATION = re.compile(r"(?:(?:([0-9]+)-)?([0-9]+):)?([0-9]+):([0-9]+(?:\.[0-9]+)?)")


def parse_duration(value: str) -> float | None:
    """Slurm and ps durations: ``[D-]HH:MM:SS``, ``MM:SS`` or ``MM:SS.mmm`` -> seconds."""
    match = _DURATION.fullmatch((value or "").strip())
    if not match:
        return None
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def base_state(state: str) -> str:
    """``CANCELLED by 10001`` -> ``CANCELLED``; newer squeue --json gives a list of flags."""
    if isinstance(state, list):
        state = state[0] if state else ""
    return (state or "").split(" ", 1)[0].upper()


def _sacct_time_limit(value: str) -> int | None:
    # TimelimitRaw is minutes; UNLIMITED and Partition_Limit mean no limit of the job's own.
    minutes = _int(value)
    return None if minutes is None else minutes * 60


def _sacct_exit_code(value: str, state: str) -> str | None:
    if state not in FINISHED_STATES or not re.fullmatch(r"[0-9]+:[0-9]+", value or ""):
        return None
    return value


def sacct_record_to_job(fields: Sequence[str]) -> Job:
    """One ``SACCT_JOB_FIELDS`` record -> the API's job dict."""
    record = dict(zip(SACCT_JOB_FIELDS, fields, strict=True))
    state = base_state(record["State"])
    reason = _text(record["Reason"]) if state == "PENDING" else None
    cpus = _int(record["AllocCPUS"], 0) or _int(record["ReqCPUS"])
    return {
        "id": record["JobID"],
        "name": record["JobName"],
        "state": state,
        "reason": reason,
        "partition": _text(record["Partition"]),
        "account": _text(record["Account"]),
        "user": _text(record["User"]),
        "submit_time": iso_time(_epoch(record["Submit"])),
        "start_time": iso_time(_epoch(record["Start"])),
        "end_time": iso_time(_epoch(record["End"])),
        "elapsed_seconds": _int(record["ElapsedRaw"], 0),
        "time_limit_seconds": _sacct_time_limit(record["TimelimitRaw"]),
        "node_count": _int(record["NNodes"]),
        "nodes": _text(record["NodeList"]),
        "cpus": cpus,
        "memory": tres_memory_mb(record["ReqTRES"]),
        "work_dir": _text(record["WorkDir"]),
        "exit_code": _sacct_exit_code(record["ExitCode"], state),
    }


def sacct_record_to_step(fields: Sequence[str]) -> Job:
    record = dict(zip(SACCT_JOB_FIELDS, fields, strict=True))
    state = base_state(record["State"])
    max_rss = size_to_bytes(record["MaxRSS"]) if record["MaxRSS"] else None
    return {
        "id": record["JobID"],
        "name": record["JobName"],
        "state": state,
        "exit_code": _sacct_exit_code(record["ExitCode"], state),
        "start_time": iso_time(_epoch(record["Start"])),
        "end_time": iso_time(_epoch(record["End"])),
        "elapsed_seconds": _int(record["ElapsedRaw"], 0),
        "node_count": _int(record["NNodes"]),
        "nodes": _text(record["NodeList"]),
        "tasks": _int(record["NTasks"]),
        "cpus": _int(record["AllocCPUS"]),
        "max_rss_bytes": max_rss,
    }


def parse_sacct(text: str, delimiter: str) -> tuple[list[Job], list[Job]]:
    """``sacct`` output -> (allocations, steps); a step's id has a dot (``14.batch``, ``9.0``)."""
    jobs: list[Job] = []
    steps: list[Job] = []
    for fields in split_records(text, delimiter, len(SACCT_JOB_FIELDS)):
        if "." in fields[0]:
            steps.append(sacct_record_to_step(fields))
        else:
            jobs.append(sacct_record_to_job(fields))
    return jobs, steps


def squeue_job_id(record: Mapping[str, Any]) -> str:
    """The id as sacct and the user write it: ``123``, ``123_4``, ``123_[5-9]``, ``123+1``."""
    het = _int(record.get("het_job_id"), 0)
    if het:
        return f"{het}+{_int(record.get('het_job_offset'), 0)}"
    array = _int(record.get("array_job_id"), 0)
    if array:
        task = _int(record.get("array_task_id"))
        if task is not None:
            return f"{array}_{task}"
        if record.get("array_task_string"):
            return f"{array}_[{record['array_task_string']}]"
    return str(record["job_id"])


def _wait_status(status: object) -> str:
    # squeue --json gives the raw wait(2) status (768 = exit 3, 9 = killed by SIGKILL); sacct's
    # form is "exit:signal", and we answer in that one form.
    code = _int(status, 0) or 0
    return f"{(code >> 8) & 0xFF}:{code & 0x7F}"


def squeue_record_to_job(record: Mapping[str, Any], now: float) -> Job:
    state = base_state(record.get("job_state", ""))
    start = _epoch(record.get("start_time"))
    end = _epoch(record.get("end_time"))
    if state in FINISHED_STATES:
        elapsed = max(0, end - start) if start and end else 0
    elif start and state in {"RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "CONFIGURING"}:
        # squeue only knows the start: count from it, as sacct's ElapsedRaw does for live jobs.
        elapsed = max(0, int(now) - start)
        end = None
    else:
        elapsed = 0
        end = None
    limit = record.get("time_limit")
    # v0.0.38 gives minutes, null for UNLIMITED; guard against INFINITE's raw 0xfffffffe too.
    time_limit = limit * 60 if isinstance(limit, int) and 0 <= limit < 0xFFFFFFFE else None
    reason = record.get("state_reason") if state == "PENDING" else None
    return {
        "id": squeue_job_id(record),
        "name": record.get("name", ""),
        "state": state,
        "reason": _text(reason),
        "partition": _text(record.get("partition")),
        "account": _text(record.get("account")),
        "user": _text(record.get("user_name")),
        "submit_time": iso_time(_epoch(record.get("submit_time"))),
        "start_time": iso_time(start),
        "end_time": iso_time(end),
        "elapsed_seconds": elapsed,
        "time_limit_seconds": time_limit,
        "node_count": _int(record.get("node_count")),
        "nodes": _text(record.get("nodes")),
        "cpus": _int(record.get("cpus")),
        "memory": tres_memory_mb(record.get("tres_req_str") or ""),
        "work_dir": _text(record.get("current_working_directory")),
        "exit_code": _wait_status(record.get("exit_code")) if state in FINISHED_STATES else None,
    }


def parse_squeue_json(text: str, now: float, *, user: str | None = None) -> list[Job]:
    """``squeue --json`` -> jobs, keeping only ``user``'s when given (22.05 ignores ``--user``)."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise SlurmError("could not parse squeue's JSON output") from exc
    records = document.get("jobs") if isinstance(document, dict) else None
    if not isinstance(records, list):
        raise SlurmError("squeue's JSON output has no job list")
    return [
        squeue_record_to_job(record, now)
        for record in records
        if isinstance(record, dict) and (user is None or record.get("user_name") == user)
    ]


# Fields that do not change over a job's life: when squeue lacks one, accounting may have it.
_STATIC_FIELDS = ("partition", "account", "work_dir", "memory", "submit_time", "user")


def restore_recorded_names(jobs: Iterable[Job], recorded: Mapping[str, str]) -> None:
    """Put back the exact names of jobs whose name accounting altered.

    slurmdbd stores a job name's ``"`` as a backtick, so once slurmctld forgets a job (MinJobAge)
    ``a "b"`` comes back as ``a `b```. ``recorded`` maps job ids to the names the service itself
    submitted them with; a name is restored only where the two agree but for that change, so a
    recycled id with another name is left as Slurm says.
    """
    for job in jobs:
        name = recorded.get(job["id"])
        if name and job["name"] != name and name.replace('"', "`") == job["name"]:
            job["name"] = name


def merge_jobs(accounted: Iterable[Job], queued: Iterable[Job]) -> list[Job]:
    """Accounting lags slurmctld by seconds: for a job squeue knows, squeue's view wins."""
    merged = {job["id"]: job for job in accounted}
    for job in queued:
        old = merged.get(job["id"])
        if old is not None:
            job = {**job, **{k: old[k] for k in _STATIC_FIELDS if job.get(k) is None}}
            # Once accounting has the job finished, its exit code is the one that stays (squeue
            # reports 0:15 for a cancelled job where sacct keeps 0:0); keep the answer stable.
            if old["state"] in FINISHED_STATES and job["state"] in FINISHED_STATES:
                job["exit_code"] = old["exit_code"]
        merged[job["id"]] = job
    return list(merged.values())


def _id_key(job_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"[0-9]+", job_id))


def newest_first(jobs: Iterable[Job]) -> list[Job]:
    # ISO times in UTC with one format sort as strings; the id breaks ties (a whole array at once).
    return sorted(jobs, key=lambda job: (job.get("submit_time") or "", _id_key(job["id"])), reverse=True)


def parse_sstat(text: str) -> list[Job]:
    """``sstat -a`` -> live figures per step (summed over its nodes by Slurm)."""
    steps = []
    for fields in split_records(text, "|", len(SSTAT_FIELDS)):
        record = dict(zip(SSTAT_FIELDS, fields, strict=True))
        cpu = tres_value(record["TRESUsageInTot"], "cpu")
        steps.append(
            {
                "id": record["JobID"],
                "tasks": _int(record["NTasks"]),
                "nodes": _text(record["NodeList"]),
                "cpu_seconds": parse_duration(cpu) if cpu else None,
                "ave_cpu_seconds": parse_duration(record["AveCPU"]),
                "ave_rss_bytes": size_to_bytes(record["AveRSS"]) if record["AveRSS"] else None,
                "max_rss_bytes": size_to_bytes(record["MaxRSS"]) if record["MaxRSS"] else None,
                "max_rss_node": _text(record["MaxRSSNode"]),
            }
        )
    return steps


_LABEL = re.compile(r"\s*([0-9]+): ?(.*)")


def parse_probe(text: str, top: int = TOP_PROCESSES) -> list[Job]:
    """The labelled output of ``PROBE_SCRIPT`` (one task per node) -> usage per node.

    ``scope`` is ``job`` when ``scontrol listpids`` named the job's processes (the probe's own
    step left out), else ``user``: every process of the user on that node.
    """
    tasks: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        match = _LABEL.fullmatch(line)
        if not match:
            continue
        task = tasks.setdefault(
            match.group(1), {"node": None, "step": None, "section": "", "pids": [], "ps": []}
        )
        body = match.group(2)
        if body in ("--pids--", "--ps--"):
            task["section"] = body
        elif not task["section"] and body.startswith("node "):
            task["node"] = body[5:].strip()
        elif not task["section"] and body.startswith("step "):
            task["step"] = body[5:].strip()
        elif task["section"] == "--pids--":
            # PID JOBID STEPID LOCALID GLOBALID
            columns = body.split()
            if len(columns) >= 3 and columns[0].isdigit():
                task["pids"].append((int(columns[0]), columns[2]))
        elif task["section"] == "--ps--":
            columns = body.split(None, 4)
            if len(columns) == 5 and columns[0].isdigit():
                task["ps"].append(columns)
    nodes = []
    for task in tasks.values():
        job_pids = {pid for pid, step in task["pids"] if step != task["step"]}
        rows = [row for row in task["ps"] if int(row[0]) in job_pids] if job_pids else task["ps"]
        processes = [
            {
                "pid": int(pid),
                "cpu_percent": float(pcpu),
                "rss_bytes": int(rss) * 1024,
                "elapsed_seconds": parse_duration(etime),
                "command": command,
            }
            for pid, pcpu, rss, etime, command in rows
        ]
        processes.sort(key=lambda p: p["cpu_percent"], reverse=True)
        nodes.append(
            {
                "node": task["node"],
                "scope": "job" if job_pids else "user",
                "cpu_percent": round(sum(p["cpu_percent"] for p in processes), 1),
                "rss_bytes": sum(p["rss_bytes"] for p in processes),
                "processes": processes[:top],
            }
        )
    return sorted(nodes, key=lambda n: n["node"] or "")


def parse_sbatch(text: str) -> str:
    """``sbatch --parsable`` prints ``123`` or ``123;cluster``."""
    job_id = text.strip().splitlines()[-1].split(";", 1)[0].strip() if text.strip() else ""
    if not re.fullmatch(r"[0-9]{1,10}", job_id):
        raise SlurmError(f"sbatch printed no job id: {text.strip()[:200]!r}")
    return job_id


def slurm_message(stderr: str, limit: int = 2000) -> str:
    """Slurm's own message without the ``sbatch: error:`` prefixes, for the client to read."""
    lines = []
    for line in stderr.splitlines():
        line = re.sub(r"^(?:s[a-z]+|scontrol): (?:error|fatal): ", "", line.strip())
        if line:
            lines.append(line)
    return "; ".join(lines)[:limit] or "Slurm gave no reason"


_START_AFTER_NOW = re.compile(r"Start time \(.*\) requested is after end time")
_UNAVAILABLE = re.compile(
    r"Unable to contact slurm controller|Socket timed out|Connection refused"
    r"|slurmdbd.*(?:down|not responding)|Problem talking to the database|Transport endpoint is not connected",
    re.IGNORECASE,
)


def command_error(result: CommandResult) -> SlurmError:
    """A failed Slurm command -> 503 when a daemon is down, else 502 with Slurm's message."""
    message = slurm_message(result.error_text() or result.text())
    command = result.argv[0] if result.argv else "command"
    if result.argv and result.argv[0] == "env" and len(result.argv) > 2:
        command = result.argv[2]
    if _UNAVAILABLE.search(message):
        return SlurmUnavailable(f"Slurm is not answering ({command}): {message}")
    return SlurmError(f"{command} failed (exit {result.exit_status}): {message}")


# --------------------------------------------------------------------------------------------
# The client: I/O through the runner, everything else above
# --------------------------------------------------------------------------------------------

MAX_SCRIPT_BYTES = 4 * 1024 * 1024  # Slurm's default max_script_size


@dataclass(frozen=True)
class _Located:
    job: Job
    steps: list[Job]
    in_queue: bool


class SlurmClient:
    """Slurm for one cluster, through a runner that executes argv as the user on a login node.

    Every call validates its arguments before anything runs and raises ``SlurmError``
    subclasses carrying their HTTP status; the runner's own errors (unreachable, timeout)
    pass through.
    """

    def __init__(self, run: Runner, *, timeout: float = 30.0, clock: Callable[[], float] | None = None):
        self._run_argv = run
        self.timeout = timeout
        self._clock = clock or (lambda: datetime.now(UTC).timestamp())

    def _run(self, argv: Sequence[str], stdin: bytes | None = None) -> CommandResult:
        return self._run_argv(argv, stdin, self.timeout)

    def _checked(self, argv: Sequence[str]) -> CommandResult:
        result = self._run(argv)
        if not result.ok:
            raise command_error(result)
        return result

    def _history(self, argv: Sequence[str]) -> str:
        """sacct's records; none when the start day has not begun on the cluster yet.

        sacct 22.05 refuses a start after its own clock ("Start time (...) requested is after end
        time (...)", exit 1), which was a 502: no job can have started then, so nothing matches.
        """
        result = self._run(argv)
        if not result.ok and _START_AFTER_NOW.search(result.error_text()):
            return ""
        if not result.ok:
            raise command_error(result)
        return result.text()

    # -- reading ---------------------------------------------------------------------------

    def list_jobs(
        self,
        user: str,
        since: date | str | None = None,
        states: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """The user's jobs since a day (default: 7 days ago), newest first."""
        user = validate_user(user)
        since_text = validate_since(since)
        wanted = validate_states(states)
        limit = validate_limit(limit)
        delimiter = new_delimiter()
        # the history and the live queue are independent reads: run them at once (two channels on
        # the user's connection), so a list costs the slower of the two rather than their sum
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="slurm-list") as both:
            history = both.submit(self._history, sacct_list_argv(user, since_text, delimiter, wanted))
            queue = both.submit(self._checked, squeue_argv(user))
            accounted, _ = parse_sacct(history.result(), delimiter)
            queued = parse_squeue_json(queue.result().text(), self._clock(), user=user)
        jobs = merge_jobs(accounted, queued)
        if wanted is not None:
            jobs = [job for job in jobs if job["state"] in wanted]
        jobs = newest_first(jobs)
        return jobs[:limit] if limit else jobs

    def _locate(self, user: str, job_id: str) -> _Located:
        """Find one job in the queue and in accounting; 404 if neither knows it, 403 if not ours."""
        delimiter = new_delimiter()
        accounted, steps = parse_sacct(self._checked(sacct_job_argv(job_id, delimiter)).text(), delimiter)
        queued = parse_squeue_json(self._checked(squeue_argv()).text(), self._clock())
        candidates = merge_jobs(accounted, queued)
        job = _pick(job_id, candidates)
        if job is None:
            raise JobNotFound(f"no job {job_id} on this cluster")
        if job.get("user") != user:
            # Checked before anything else is read or done: another user's job says nothing more.
            raise JobForbidden(f"job {job_id} belongs to another user")
        own_steps = [s for s in steps if s["id"].split(".", 1)[0] == job["id"]]
        in_queue = any(q["id"] == job["id"] for q in queued)
        return _Located(job=job, steps=own_steps, in_queue=in_queue)

    def get_job(self, user: str, job_id: str, with_usage: bool = True) -> Job:
        """One job with ``steps``, ``script`` (while slurmctld has it) and, if running, ``usage``."""
        job_id = validate_job_id(job_id)
        user = validate_user(user)
        located = self._locate(user, job_id)
        job = dict(located.job)
        job["steps"] = located.steps
        job["script"] = self._batch_script(job["id"]) if located.in_queue else None
        job["usage"] = self._usage(job) if with_usage and job["state"] == "RUNNING" else None
        return job

    def _batch_script(self, job_id: str) -> str | None:
        if "[" in job_id:
            return None
        result = self._run(batch_script_argv(job_id))
        # scontrol exits 0 even when it could not fetch the script: stdout is the only signal.
        if not result.ok or not result.stdout:
            return None
        return result.text()

    def _usage(self, job: Job) -> Job:
        sstat = self._run(sstat_argv(job["id"]))
        # A job that ends between our calls has "No steps running": an empty sample, not an error.
        if not sstat.ok and "No steps running" not in sstat.error_text():
            raise command_error(sstat)
        steps = parse_sstat(sstat.text()) if sstat.ok else []
        nodes: list[Job] = []
        if job.get("nodes") and job.get("node_count"):
            probe = self._run(probe_argv(job["id"], job["nodes"], job["node_count"]))
            # A job that ends between the two calls refuses new steps: report what sstat had.
            if probe.ok:
                nodes = parse_probe(probe.text())
        return {"sampled_at": iso_time(int(self._clock())), "nodes": nodes, "steps": steps}

    # -- writing ---------------------------------------------------------------------------

    def submit_script_path(self, user: str, path: str) -> str:
        """Submit a script already on the cluster; it runs in its own directory. Returns the job id."""
        validate_user(user)
        path = validate_absolute_path(path, name="script_path")
        return self._submit(sbatch_path_argv(path), None)

    def submit_script(self, user: str, script: str, work_dir: str, name: str | None = None) -> str:
        """Submit script text (sent on stdin) to run in ``work_dir``. Returns the job id."""
        validate_user(user)
        work_dir = validate_absolute_path(work_dir, name="work_dir")
        if name is not None:
            name = validate_job_name(name)
        if not isinstance(script, str) or not script.strip():
            raise SlurmBadRequest("script must not be empty", location="body", name="script")
        body = script.encode("utf-8")
        if len(body) > MAX_SCRIPT_BYTES or "\x00" in script:
            raise SlurmBadRequest(
                f"script must be text of at most {MAX_SCRIPT_BYTES} bytes", location="body", name="script"
            )
        return self._submit(sbatch_stdin_argv(work_dir, name), body)

    def _submit(self, argv: list[str], stdin: bytes | None) -> str:
        # Never retried: a second sbatch would be a second job.
        result = self._run(argv, stdin)
        if not result.ok:
            message = slurm_message(result.error_text() or result.text())
            if _UNAVAILABLE.search(message):
                raise SlurmUnavailable(f"Slurm is not answering (sbatch): {message}")
            raise SlurmRefused(message)
        return parse_sbatch(result.text())

    def cancel_job(self, user: str, job_id: str) -> None:
        """Cancel one of the user's jobs: 404 unknown, 403 someone else's, 409 already finished."""
        job_id = validate_job_id(job_id)
        user = validate_user(user)
        job = self._locate(user, job_id).job
        if job["state"] in FINISHED_STATES:
            raise JobFinished(f"job {job_id} already finished ({job['state']})")
        result = self._run(scancel_argv(job_id))
        message = result.error_text()
        # scancel may say why on stderr and still exit 0, so read both.
        if "already completing or completed" in message:
            raise JobFinished(f"job {job_id} already finished")
        if "Invalid job id" in message:
            raise JobNotFound(f"no job {job_id} on this cluster")
        if "Access/permission denied" in message:
            raise JobForbidden(f"job {job_id} belongs to another user")
        if not result.ok:
            raise command_error(result)


def _pick(job_id: str, jobs: Sequence[Job]) -> Job | None:
    """The record for ``job_id``; for an array's or het job's own id, its first task or component."""
    for job in jobs:
        if job["id"] == job_id:
            return job
    related = [job for job in jobs if re.match(rf"{re.escape(job_id)}[_+]", job["id"])]
    return min(related, key=lambda job: _id_key(job["id"])) if related else None


def format_argv(argv: Sequence[str]) -> str:
    """For logs: how the argv reads in a shell (never executed as such)."""
    return shlex.join(argv)
