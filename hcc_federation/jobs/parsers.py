"""Parsers of Slurm's output into jobs (pure), and the errors a failed command means."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hcc_federation.remote.result import CommandResult
from hcc_federation.timefmt import rfc3339

from .commands import SACCT_JOB_FIELDS, SSTAT_FIELDS
from .errors import SlurmError, SlurmUnavailable
from .validation import FINISHED_STATES, TOP_PROCESSES

Job = dict[str, Any]

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
    """The API's time format (timefmt); Slurm's 0 means unset."""
    return rfc3339(epoch) if epoch else None


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


def req_mem_mb(value: str, cpus: int | None, nodes: int | None) -> int | None:
    """sacct's ReqMem in MiB for the whole job: ``200M`` (21.08 and later: the job's total), or
    ``100Mc`` / ``300Mn`` (before 21.08: per CPU / per node, multiplied out here)."""
    value = (value or "").strip()
    per = {"c": cpus, "n": nodes}.get(value[-1:]) if value[-1:] in ("c", "n") else 1
    size = size_to_mb(value[:-1] if value[-1:] in ("c", "n") else value)
    if size is None or per is None:
        return None
    return size * per


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


def sacct_record_to_job(fields: Sequence[str], names: Sequence[str] = SACCT_JOB_FIELDS) -> Job:
    """One record of ``names`` (SACCT_JOB_FIELDS or SACCT_LIST_FIELDS) -> the API's job dict."""
    record = dict(zip(names, fields, strict=True))
    state = base_state(record["State"])
    reason = _text(record["Reason"]) if state == "PENDING" else None
    cpus = _int(record["AllocCPUS"], 0) or _int(record["ReqCPUS"])
    if "ReqMem" in record:
        memory = req_mem_mb(record["ReqMem"], _int(record["ReqCPUS"]), _int(record["NNodes"]))
    else:
        memory = tres_memory_mb(record["ReqTRES"])
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
        "memory": memory,
        "work_dir": _text(record["WorkDir"]),
        "exit_code": _sacct_exit_code(record["ExitCode"], state),
    }


def sacct_record_to_step(fields: Sequence[str], names: Sequence[str] = SACCT_JOB_FIELDS) -> Job:
    record = dict(zip(names, fields, strict=True))
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


def parse_sacct(
    text: str, delimiter: str, names: Sequence[str] = SACCT_JOB_FIELDS
) -> tuple[list[Job], list[Job]]:
    """``sacct`` output of the fields ``names`` (sacct_job_argv's by default, SACCT_LIST_FIELDS for
    sacct_list_argv) -> (allocations, steps); a step's id has a dot (``14.batch``, ``9.0``)."""
    jobs: list[Job] = []
    steps: list[Job] = []
    for fields in split_records(text, delimiter, len(names)):
        if "." in fields[0]:
            steps.append(sacct_record_to_step(fields, names))
        else:
            jobs.append(sacct_record_to_job(fields, names))
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


def squeue_records(text: str) -> list[dict[str, Any]]:
    """``squeue --json`` -> its raw job records (for a caller that needs more than the job dicts)."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise SlurmError("could not parse squeue's JSON output") from exc
    records = document.get("jobs") if isinstance(document, dict) else None
    if not isinstance(records, list):
        raise SlurmError("squeue's JSON output has no job list")
    return [record for record in records if isinstance(record, dict)]


def parse_squeue_json(text: str, now: float, *, user: str | None = None) -> list[Job]:
    """``squeue --json`` -> jobs, keeping only ``user``'s when given (22.05 ignores ``--user``)."""
    return [
        squeue_record_to_job(record, now)
        for record in squeue_records(text)
        if user is None or record.get("user_name") == user
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


def id_key(job_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"[0-9]+", job_id))


def newest_first(jobs: Iterable[Job]) -> list[Job]:
    # ISO times in UTC with one format sort as strings; the id breaks ties (a whole array at once).
    return sorted(jobs, key=lambda job: (job.get("submit_time") or "", id_key(job["id"])), reverse=True)


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


UNAVAILABLE = re.compile(
    r"Unable to contact slurm controller|Socket timed out|Connection refused"
    r"|slurmdbd.*(?:down|not responding)|Problem talking to the database|Transport endpoint is not connected",
    re.IGNORECASE,
)


def command_error(result: CommandResult) -> SlurmError:
    """A failed Slurm command -> SlurmUnavailable if a daemon is down, else SlurmError with its message."""
    message = slurm_message(result.error_text() or result.text())
    command = result.argv[0] if result.argv else "command"
    if result.argv and result.argv[0] == "env" and len(result.argv) > 2:
        command = result.argv[2]
    if UNAVAILABLE.search(message):
        return SlurmUnavailable(f"Slurm is not answering ({command}): {message}")
    return SlurmError(f"{command} failed (exit {result.exit_status}): {message}")
