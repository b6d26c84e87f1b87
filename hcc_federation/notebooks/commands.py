"""Scripts, argv builders and output parsers of the notebook feature (pure: nothing runs here)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

# The folder under the person's home that holds one folder per notebook (0700, like each of them).
NOTEBOOKS_DIR = ".hcc-notebooks"
# What a Jupyter server logs when its port is taken (jupyter_server 2: "The port %i is already in use").
PORT_IN_USE = re.compile(r"(port \d+ is already in use|Address already in use)", re.IGNORECASE)
# What it logs once it listens (jupyter_server 2, JupyterLab and the classic notebook alike)
SERVER_LISTENING = re.compile(r"is running at", re.IGNORECASE)
LOG_TAIL_BYTES = 4000
ID_RE = re.compile(r"^[0-9a-f]{32}$")
PARTITION_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
JOB_ID_RE = re.compile(r"^[0-9]{1,20}$")


def server_arguments(folder: str, tls: tuple[str, str], ip: str | None = None) -> list[str]:
    """The Jupyter server's options besides its port: where it listens, TLS, its runtime files."""
    certfile, keyfile = tls
    return [
        *([f"--ServerApp.ip={ip}"] if ip else []),
        "--ServerApp.port_retries=0",
        "--ServerApp.open_browser=False",
        # the readiness check and users come through the login node's sshd or the site's proxy
        "--ServerApp.allow_remote_access=True",
        f"--ServerApp.certfile={certfile}",
        f"--ServerApp.keyfile={keyfile}",
        # its runtime files in the notebook's own folder; also how `ps` tells our server from a
        # process that reused its pid
        f"--ServerApp.runtime_dir={folder}/runtime",
    ]


# Started with `bash -s -- FOLDER PORT WORKDIR COMMAND...` and this text on stdin. The server is
# detached (setsid, nohup, no terminal, no open descriptor of the SSH channel) so that it outlives the
# channel; the token comes from a 0600 file, never from argv, which every user can read in `ps`.
LOGIN_START_SCRIPT = """\
set -eu
folder=$1; port=$2; work_dir=$3; shift 3
export JUPYTER_TOKEN="$(cat -- "$folder/token")"
cd -- "$work_dir"
{prefix}
nohup setsid "$@" "--ServerApp.port=$port" >"$folder/server.log" 2>&1 </dev/null &
echo "pid $!"
"""


def login_start_argv(
    folder: str, port: int, work_dir: str, command: Sequence[str], arguments: Sequence[str]
) -> list[str]:
    return ["bash", "-s", "--", folder, str(port), work_dir, *command, *arguments]


def login_start_script(prefix: str) -> bytes:
    """The launcher, with the admin's trusted ``notebook_command_prefix`` (e.g. `module load jupyter`)."""
    return LOGIN_START_SCRIPT.replace("{prefix}", prefix or ":").encode()


def parse_pid(text: str) -> int | None:
    match = re.search(r"^pid (\d+)$", text, re.MULTILINE)
    return int(match.group(1)) if match else None


# `sh -c STATUS sh PID FOLDER`: whether the pid still runs OUR server (its argv names the folder),
# then the end of its log.
LOGIN_STATUS_SCRIPT = (
    'if ps -o args= -p "$1" 2>/dev/null | grep -qF -- "$2/runtime"; then echo alive; else echo gone; fi; '
    f'tail -c {LOG_TAIL_BYTES} -- "$2/server.log" 2>/dev/null; true'
)


def login_status_argv(pid: int, folder: str) -> list[str]:
    return ["sh", "-c", LOGIN_STATUS_SCRIPT, "sh", str(pid), folder]


def parse_login_status(text: str) -> tuple[bool, str]:
    """(alive, the log's tail) from LOGIN_STATUS_SCRIPT's output."""
    first, _, rest = text.partition("\n")
    return first.strip() == "alive", rest


# Ends the server's process group (the server and its kernels), only if the pid is still ours: TERM,
# up to 2 s for the server to shut its kernels down, then KILL for whatever of the group is left.
LOGIN_STOP_SCRIPT = (
    'if ps -o args= -p "$1" 2>/dev/null | grep -qF -- "$2/runtime"; then '
    'kill -TERM -- "-$1"; '
    # a zombie (ended, not yet reaped by init) counts as ended
    'for i in 1 2 3 4 5 6 7 8 9 10; do ps -o stat= -p "$1" 2>/dev/null | grep -q "^[^Z]" || break; '
    "sleep 0.2; done; "
    'kill -KILL -- "-$1" 2>/dev/null; fi; true'
)


def login_stop_argv(pid: int, folder: str) -> list[str]:
    # bash, not sh: dash's kill refuses `--` and so cannot signal a process group (kernels survived)
    return ["bash", "-c", LOGIN_STOP_SCRIPT, "bash", str(pid), folder]


# The default batch job: run by sbatch with --chdir=FOLDER, it starts the server on the node, tries
# the ports the service listed (the first one free on this node wins) and writes "host port address" to
# FOLDER/server before each try. @PREFIX@, @COMMAND@ and @ARGUMENTS@ are replaced (shell-quoted).
DEFAULT_JOB_TEMPLATE = """\
#!/bin/bash
# hcc-federation: a Jupyter server for the notebook whose folder this job runs in
folder=$PWD
host=$(hostname)
# where the login node reaches this node: Slurm's NodeAddr (the node's name when it has none)
addr=$(scontrol show node "${SLURMD_NODENAME:-$host}" 2>/dev/null | sed -n 's/.*NodeAddr=\\([^ ]*\\).*/\\1/p')
addr=${addr:-$host}
export JUPYTER_TOKEN="$(cat -- "$folder/token")"
@PREFIX@
cd -- "$(cat -- "$folder/work_dir")" || exit 1
for port in $(cat -- "$folder/ports"); do
    printf '%s %s %s\\n' "$host" "$port" "$addr" >"$folder/server.tmp"
    mv -f -- "$folder/server.tmp" "$folder/server"
    @COMMAND@ @ARGUMENTS@ "--ServerApp.ip=$addr" "--ServerApp.port=$port" >"$folder/server.log" 2>&1
    status=$?
    cat -- "$folder/server.log"
    grep -Eqi 'port [0-9]+ is already in use|Address already in use' "$folder/server.log" || exit $status
done
echo "no free port among those given" >&2
exit 1
"""


def render_job_script(template: str, prefix: str, command: Sequence[str], arguments: Sequence[str]) -> str:
    """The batch job script: the admin's template with the command and options filled in."""
    return (
        template.replace("@PREFIX@", prefix or ":")
        .replace("@COMMAND@", shlex.join(command))
        .replace("@ARGUMENTS@", shlex.join(arguments))
    )


def sbatch_argv(
    folder: str, hours: int, partition: str | None, cpus: int | None, memory: int | None
) -> list[str]:
    argv = [
        "sbatch",
        "--parsable",
        f"--chdir={folder}",
        "--job-name=hcc-notebook",
        f"--output={folder}/job.out",
        f"--time={hours * 60}",
    ]
    if partition:
        argv.append(f"--partition={partition}")
    if cpus:
        argv.append(f"--cpus-per-task={cpus}")
    if memory:
        argv.append(f"--mem={memory}M")
    return argv


def parse_job_id(text: str) -> str | None:
    """sbatch --parsable prints ``id`` or ``id;cluster``."""
    first = text.strip().splitlines()[-1] if text.strip() else ""
    job_id = first.split(";", 1)[0].strip()
    return job_id if JOB_ID_RE.fullmatch(job_id) else None


def squeue_job_argv(job_id: str) -> list[str]:
    return ["squeue", "--noheader", f"--jobs={job_id}", "--format=%T|%r"]


def parse_squeue_job(text: str) -> tuple[str, str] | None:
    """(state, reason) of the job, or None when the queue no longer holds it."""
    for line in text.splitlines():
        if "|" in line:
            state, _, reason = line.strip().partition("|")
            return state, reason
    return None


def sacct_job_argv(job_id: str) -> list[str]:
    return [
        "sacct",
        "--noheader",
        "--parsable2",
        "--allocations",
        f"--jobs={job_id}",
        "--format=State,ExitCode",
    ]


def parse_sacct_state(text: str) -> str | None:
    for line in text.splitlines():
        if line.strip():
            return line.split("|", 1)[0].split(" ", 1)[0].strip()
    return None


def scancel_argv(job_id: str) -> list[str]:
    return ["scancel", job_id]


def partition_argv(partition: str) -> list[str]:
    return ["sinfo", "--noheader", f"--partition={partition}", "--format=%R"]


def parse_partitions(text: str) -> set[str]:
    return {line.strip().rstrip("*") for line in text.splitlines() if line.strip()}


def hostname_argv() -> list[str]:
    return ["hostname"]


def candidate_ports(low: int, high: int, taken: set[int], rng) -> list[int]:
    """Every port of the range in a random order, the ones the registry holds last."""
    ports = list(range(low, high + 1))
    rng.shuffle(ports)
    return [p for p in ports if p not in taken] + [p for p in ports if p in taken]


def notebook_url(template: str, host: str, port: int, token: str) -> str:
    base = template.replace("{host}", host).replace("{port}", str(port))
    return f"{base}{'&' if '?' in base else '?'}token={token}"
