"""Where a batch job's stdout and stderr go: Slurm's filename patterns resolved as slurmstepd does (pure)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# slurmstepd prints NO_VAL for %a of a job that is not an array task (checked on 22.05: a file
# "x-4294967294.out"), and a width of more than 10 digits is cut to 10.
NO_VAL = 4294967294
MAX_WIDTH = 10
STREAMS = ("stdout", "stderr")
_JOB_ID = re.compile(r"([0-9]+)(?:_([0-9]+))?")


@dataclass(frozen=True)
class OutputContext:
    """What slurmstepd knows when it names a batch job's files.

    ``job_id`` is the job's own numeric id (an array task has one of its own, besides the array's
    id), ``node_hostname`` the short host name of the node that runs the batch script (``%N``);
    None where it is not known.
    """

    job_id: int | None
    array_job_id: int | None
    array_task_id: int | None
    job_name: str
    user: str
    work_dir: str | None
    node_hostname: str | None = None


@dataclass(frozen=True)
class OutputPaths:
    """The absolute paths of the job's stdout and stderr, or None with the reason in ``reason``."""

    stdout: str | None
    stderr: str | None
    reason: str | None = None


class Unresolvable(ValueError):
    """A pattern needs something that is not known (a node's host name, a task's own id)."""


def default_pattern(is_array_task: bool) -> str:
    """sbatch's default when no --output is given: ``slurm-%j.out``, ``slurm-%A_%a.out`` for arrays."""
    return "slurm-%A_%a.out" if is_array_task else "slurm-%j.out"


def _number(value: int | None, width: int, what: str) -> str:
    if value is None:
        raise Unresolvable(f"{what} is not known")
    return f"{value:0{width}d}"


def _field(letter: str, width: int, context: OutputContext) -> str | None:
    """One conversion of a batch job's pattern; None for a letter slurmstepd leaves as it is."""
    if letter in "jJ":
        # %J of the batch step is the job id alone (22.05 writes no ".batch" suffix)
        return _number(context.job_id, width, "the job's own id")
    if letter == "A":
        array_job = context.array_job_id if context.array_task_id is not None else context.job_id
        return _number(array_job, width, "the job's array id")
    if letter == "a":
        task = context.array_task_id if context.array_task_id is not None else NO_VAL
        return _number(task, width, "the array task id")
    if letter in "nt":
        # node 0 and task 0: the batch script runs once, on the allocation's first node
        return _number(0, width, "")
    if letter == "s":
        return "batch"
    if letter == "u":
        return context.user
    if letter == "x":
        return context.job_name
    if letter == "N":
        if not context.node_hostname:
            raise Unresolvable("%N names the node that runs the job, which is not known yet")
        return context.node_hostname
    return None


def _unescaped(pattern: str) -> str:
    # a backslash anywhere turns expansion off: "\\" stays one backslash, a lone one is dropped
    return re.sub(r"\\(\\?)", r"\1", pattern)


def expand_pattern(pattern: str, context: OutputContext) -> str:
    """The absolute path slurmstepd (22.05) makes of a batch job's ``--output``/``--error`` pattern.

    Raises Unresolvable when the pattern needs what the context does not know. Unknown letters
    stay as they are (``%q`` is written ``%q``), as slurmstepd leaves them.
    """
    if "\\" in pattern:
        name = _unescaped(pattern)
    else:
        out: list[str] = []
        index, length = 0, len(pattern)
        while index < length:
            char = pattern[index]
            if char != "%" or index + 1 >= length:
                out.append(char)
                index += 1
                continue
            if pattern[index + 1] == "%":
                out.append("%")
                index += 2
                continue
            digits = re.match(r"[0-9]*", pattern[index + 1 :]).group()
            letter_at = index + 1 + len(digits)
            if letter_at >= length:
                # a trailing "%12": slurmstepd keeps its last digit only
                out.append(digits[-1:] if digits else "%")
                break
            letter = pattern[letter_at]
            width = min(int(digits), MAX_WIDTH) if digits else 0
            value = _field(letter, width, context)
            if value is None:
                # left as is; with a width, slurmstepd has already dropped "%" and all but one digit
                out.append(digits[-1] + letter if digits else "%" + letter)
            else:
                out.append(value)
            index = letter_at + 1
        name = "".join(out)
    if not name.startswith("/"):
        if not context.work_dir:
            raise Unresolvable("the job's working directory is not known")
        name = posixpath.join(context.work_dir, name)
    return name


def resolve_output(
    stdout_pattern: str | None, stderr_pattern: str | None, context: OutputContext
) -> OutputPaths:
    """Both paths of a batch job; an empty stdout pattern is sbatch's default, an empty stderr is stdout's."""
    stdout_pattern = stdout_pattern or default_pattern(context.array_task_id is not None)
    try:
        stdout = expand_pattern(stdout_pattern, context)
        stderr = expand_pattern(stderr_pattern, context) if stderr_pattern else stdout
    except Unresolvable as exc:
        return OutputPaths(None, None, str(exc))
    return OutputPaths(stdout, stderr)


def unknown(reason: str) -> OutputPaths:
    return OutputPaths(None, None, reason)


# --------------------------------------------------------------------------------------------
# Where the context comes from: slurmctld's record (squeue --json), or the registry and accounting


@dataclass(frozen=True)
class RecordedOutput:
    """What the registry kept at submit time for a job that slurmctld may forget."""

    stdout_pattern: str | None
    stderr_pattern: str | None
    job_name: str | None
    work_dir: str | None


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def queued_patterns(record: Mapping[str, Any]) -> RecordedOutput:
    """The patterns slurmctld holds for a job (``squeue --json``: sbatch has made them absolute)."""
    return RecordedOutput(
        stdout_pattern=record.get("standard_output") or None,
        stderr_pattern=record.get("standard_error") or None,
        job_name=record.get("name"),
        work_dir=record.get("current_working_directory") or None,
    )


def queued_problem(record: Mapping[str, Any], job_id: str) -> str | None:
    """Why a job slurmctld still has writes no output file of its own, or None."""
    if record.get("batch_flag") is False:
        return "an interactive job (srun, salloc) writes to its terminal, not to files"
    if "[" in job_id:
        return "the array's pending tasks have no files yet: ask for one task (id_task)"
    return None


def queued_context(record: Mapping[str, Any], node_hostname: str | None = None) -> OutputContext:
    """The context of a job slurmctld still has, from its ``squeue --json`` record."""
    array_job = _int(record.get("array_job_id")) or None
    task = _int(record.get("array_task_id")) if array_job else None
    return OutputContext(
        job_id=_int(record.get("job_id")),
        array_job_id=array_job,
        array_task_id=task,
        job_name=record.get("name") or "",
        user=record.get("user_name") or "",
        work_dir=record.get("current_working_directory") or None,
        node_hostname=node_hostname,
    )


def accounted_context(
    job: Mapping[str, Any], recorded: RecordedOutput, node_hostname: str | None
) -> OutputContext:
    """The context of a job slurmctld forgot: ids from its accounting record, the rest as recorded.

    An array task's own job id is not in the record, so ``%j`` of one stays unresolved.
    """
    match = _JOB_ID.fullmatch(job["id"])
    job_id = array_job = task = None
    if match and match.group(2) is not None:
        array_job, task = int(match.group(1)), int(match.group(2))
    elif match:
        job_id = int(match.group(1))
    return OutputContext(
        job_id=job_id,
        array_job_id=array_job,
        array_task_id=task,
        job_name=recorded.job_name if recorded.job_name is not None else job.get("name") or "",
        user=job.get("user") or "",
        work_dir=recorded.work_dir or job.get("work_dir"),
        node_hostname=node_hostname,
    )


def needs_node(*patterns: str | None) -> bool:
    """Whether a pattern names the node (``%N``, with or without a width), outside an escaped one."""
    return any(p and "\\" not in p and re.search(r"(?<!%)(?:%%)*%[0-9]*N", p) for p in patterns)


def first_node(nodes: str | None) -> str | None:
    """The first host of a Slurm host list (``n[01-04],m1`` -> ``n01``), where the batch script runs."""
    if not nodes:
        return None
    match = re.match(r"([^\[,]+)(?:\[([0-9]+))?", nodes)
    if not match:
        return None
    return match.group(1) + (match.group(2) or "")


# The fields the registry keeps, each printed whole (width 0) and followed by the delimiter: names
# and paths may hold spaces, commas, colons and newlines (checked on 22.05).
RECORDED_FIELDS = ("STDOUT", "STDERR", "Name", "WorkDir")


def recorded_output_argv(job_id: str, delimiter: str) -> list[str]:
    """One job's output patterns from slurmctld. squeue honours --jobs without --json: 10-20 ms on
    the bed, where ``squeue --json`` (the whole queue on 22.05) took 80-160 ms."""
    fields = ",".join(f"{field}:0{delimiter}" for field in RECORDED_FIELDS)
    return ["squeue", "--noheader", "--states=all", f"--jobs={job_id}", f"--Format={fields}"]


def parse_recorded_output(text: str, delimiter: str, job_id: str) -> RecordedOutput | None:
    """The first record of ``recorded_output_argv``'s output (an array's tasks share their patterns).

    squeue fills in what sbatch left empty: stdout as ``<work dir>/slurm-<id>.out`` (also for an
    array, whose files are really ``slurm-%A_%a.out``) and stderr as stdout. Both are kept as
    sbatch's defaults (""), which mean the same for a plain job and the right thing for an array.
    """
    pieces = text.split(delimiter)
    if len(pieces) <= len(RECORDED_FIELDS):
        return None
    stdout, stderr, name, work_dir = pieces[: len(RECORDED_FIELDS)]
    if stdout == posixpath.join(work_dir, f"slurm-{job_id}.out"):
        stdout = ""
    if stderr == stdout or (not stdout and stderr == posixpath.join(work_dir, f"slurm-{job_id}.out")):
        stderr = ""
    return RecordedOutput(
        stdout_pattern=stdout, stderr_pattern=stderr, job_name=name, work_dir=work_dir or None
    )


# What the output route needs of a job slurmctld still has, for one job id (squeue honours --jobs
# without --json): about 15 ms on the bed, where the detail's sacct + whole-queue squeue --json took
# about 200 ms, for a route that a portal polls every few seconds.
LIVE_FIELDS = (
    "JobID",
    "ArrayJobID",
    "ArrayTaskID",
    "UserName",
    "State",
    "BatchFlag",
    "BatchHost",
    "STDOUT",
    "STDERR",
    "Name",
    "WorkDir",
)


@dataclass(frozen=True)
class LiveJob:
    """One job as slurmctld has it, with where its output goes (``paths`` None: ``problem`` says why)."""

    user: str
    state: str
    patterns: RecordedOutput
    context: OutputContext
    node: str | None
    problem: str | None = None


def live_job_argv(job_id: str, delimiter: str) -> list[str]:
    fields = ",".join(f"{field}:0{delimiter}" for field in LIVE_FIELDS)
    return ["squeue", "--noheader", "--states=all", f"--jobs={job_id}", f"--Format={fields}"]


def _squeue_defaults(stdout: str, stderr: str, work_dir: str, ids: tuple[str, ...]) -> tuple[str, str]:
    """sbatch's defaults back where squeue --Format filled them in (see parse_recorded_output)."""
    printed = stdout
    if stdout in {posixpath.join(work_dir, f"slurm-{job_id}.out") for job_id in ids if job_id}:
        stdout = ""
    if stderr == printed:
        stderr = ""
    return stdout, stderr


def parse_live_job(text: str, delimiter: str, job_id: str) -> LiveJob | None:
    """``live_job_argv``'s answer when it names exactly the job asked for; None otherwise (an
    array's own id, a het job, a job slurmctld forgot): the caller then looks the long way."""
    pieces = text.split(delimiter)
    if len(pieces) != len(LIVE_FIELDS) + 1 or pieces[-1].strip():
        return None
    record = dict(zip(LIVE_FIELDS, pieces[: len(LIVE_FIELDS)], strict=True))
    own_id, array_id, task = record["JobID"], record["ArrayJobID"], record["ArrayTaskID"]
    if not own_id.isdigit() or "+" in job_id:
        return None
    is_task = task.isdigit()
    if is_task and job_id not in (own_id, f"{array_id}_{task}"):
        return None
    if not is_task and (task not in ("N/A", "") or job_id != own_id):
        # a pending array's remaining tasks ("2-5"): the long way picks its first task
        return None
    stdout, stderr = _squeue_defaults(
        record["STDOUT"], record["STDERR"], record["WorkDir"], (own_id, array_id if is_task else "")
    )
    patterns = RecordedOutput(stdout or None, stderr or None, record["Name"], record["WorkDir"] or None)
    context = OutputContext(
        job_id=int(own_id),
        array_job_id=int(array_id) if is_task and array_id.isdigit() else None,
        array_task_id=int(task) if is_task else None,
        job_name=record["Name"],
        user=record["UserName"],
        work_dir=record["WorkDir"] or None,
    )
    host = record["BatchHost"]
    problem = None
    if record["BatchFlag"] == "0":
        problem = "an interactive job (srun, salloc) writes to its terminal, not to files"
    return LiveJob(
        user=record["UserName"],
        state=record["State"].split(" ", 1)[0].upper(),
        patterns=patterns,
        context=context,
        node=host if host and host.lower() != "n/a" else None,
        problem=problem,
    )


def node_hostname_argv(node: str) -> list[str]:
    return ["scontrol", "--oneliner", "show", "node", node]


def parse_node_hostname(text: str) -> str | None:
    """``NodeHostName=`` of ``scontrol --oneliner show node``: the name slurmd writes for ``%N``."""
    match = re.search(r"(?:^|\s)NodeHostName=(\S+)", text)
    return match.group(1) if match else None


# --------------------------------------------------------------------------------------------
# Reading: a byte range now, or following the file while the job runs


def byte_window(size: int, offset: int | None, tail: int | None) -> int:
    """Where to start reading a file of ``size`` bytes: from ``offset``, the last ``tail`` bytes, or 0.

    An offset past the end starts at the end (nothing new yet; a portal polls again).
    """
    if tail is not None:
        return max(0, size - tail)
    if offset is not None:
        return min(offset, size)
    return 0


# Follows a file while the job is alive, on one channel: the job id, path and numbers come in as
# $1..$5, never spliced in. The state is read before the size, so once it says the job ended the
# read after it has every byte the job wrote. slurmctld is asked once per interval, never faster.
FOLLOW_SCRIPT = r"""
job=$1 path=$2 offset=$3 interval=$4 limit=$5
end=$(( $(date +%s) + limit ))
while :; do
  if state=$(squeue --noheader --states=all --jobs="$job" --format=%T 2>&1); then :
  else case $state in *"Invalid job id"*) state=GONE ;; *) state=UNKNOWN ;; esac
  fi
  size=$(stat -c %s -- "$path") || exit 3
  if [ "$size" -gt "$offset" ]; then
    dd if="$path" bs=262144 iflag=skip_bytes,count_bytes,fullblock skip="$offset" \
      count=$((size - offset)) status=none || exit 4
    offset=$size
  fi
  case $state in
    PENDING|CONFIGURING|RUNNING|SUSPENDED|COMPLETING|REQUEUED|REQUEUE_HOLD|REQUEUE_FED|RESIZING|\
    SIGNALING|STAGE_OUT|SPECIAL_EXIT|STOPPED|UNKNOWN) ;;
    *) exit 0 ;;
  esac
  [ "$(date +%s)" -lt "$end" ] || exit 0
  sleep "$interval"
done
"""


def follow_argv(job_id: str, path: str, offset: int, interval: float, limit: int) -> list[str]:
    """Stream ``path`` from ``offset`` as the job writes it, until it ends or ``limit`` seconds pass."""
    return ["sh", "-c", FOLLOW_SCRIPT, "sh", job_id, path, str(offset), f"{interval:g}", str(limit)]


def read_argv(path: str, offset: int, length: int) -> list[str]:
    """The ``length`` bytes of ``path`` from ``offset`` (capped, so a growing file cannot overrun)."""
    return [
        "dd",
        f"if={path}",  # absolute, so never read as an option
        "bs=262144",
        "iflag=skip_bytes,count_bytes,fullblock",
        f"skip={offset}",
        f"count={length}",
        "status=none",
    ]
