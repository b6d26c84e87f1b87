"""argv builders for sacct, squeue, sstat, scontrol, srun, sbatch and scancel (pure)."""

from __future__ import annotations

import posixpath
import re
import secrets

from .errors import SlurmError

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
# A Slurm hostlist expression as squeue prints it ("n1", "n[01-04,7]", "a1,b2").
_HOSTLIST = re.compile(r"[A-Za-z0-9._\-\[\],]{1,4096}")

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
# The list asks for ReqMem where one job asks for ReqTRES: both give the job's requested memory
# (22.05 prints ReqMem from the mem= of the same TRES string, for the whole job), but naming TRES
# makes sacct load and format every TRES of every job, which took a 1,000-job list from 74 to 169 ms.
SACCT_LIST_FIELDS = tuple("ReqMem" if field == "ReqTRES" else field for field in SACCT_JOB_FIELDS)
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
        f"--format={','.join(SACCT_LIST_FIELDS)}",
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


def probe_argv(job_id: str, nodes: str, node_count: int, script: str = PROBE_SCRIPT) -> list[str]:
    """One task per node of a running job (--overlap: it shares the job's CPUs), output labelled.

    ``script`` is a fixed ``sh -c`` text (the job id comes in as ``$1``), never one built from input.
    """
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
        script,
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
