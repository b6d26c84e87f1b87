"""argv for the texts the legacy portal parses: ``ls -lhoQ``, ``sacct -p -X -n``, ``top -b -n 1`` (pure)."""

from __future__ import annotations

from ..jobs.commands import probe_argv

# the columns of the old backend's two sacct calls, in its order: the portal reads them by position
LIST_FIELDS = ("JobID", "JobName", "State", "Start", "Elapsed", "AllocNodes")
DETAIL_FIELDS = (
    "JobID",
    "JobName",
    "Partition",
    "Account",
    "User",
    "State",
    "Start",
    "End",
    "Elapsed",
    "ReqCPUS",
    "AllocCPUs",
    "ReqMem",
    "ReqNodes",
    "AllocNodes",
    "NodeList",
)
STATE_INDEX = DETAIL_FIELDS.index("State")

# Runs once per node of a running job: its name first, then top's one batch frame of the user's
# processes. A fixed text (nothing is spliced in), as jobs.commands.PROBE_SCRIPT.
TOP_SCRIPT = 'echo "${SLURMD_NODENAME:-$(hostname)}"; exec top -b -n 1 -u "$(id -u)"'


def listing_argv(path: str) -> list[str]:
    """``ls -lhoQ`` of a directory, as the portal parses it line by line.

    C.UTF-8: English dates and messages (``map_command_error`` reads them) while UTF-8 names print as
    they are; in the plain C locale ``-Q`` would print them as octal escapes.
    """
    return ["env", "LC_ALL=C.UTF-8", "ls", "-lhoQ", "--", path]


def sacct_list_argv(user: str, since: str) -> list[str]:
    """The old backend's ``sacct -u USER -S DAY -p -X -n -o ...``: one ``|``-ended line per job."""
    return [
        "sacct",
        f"--user={user}",
        f"--starttime={since}",
        "--parsable",
        "--allocations",
        "--noheader",
        f"--format={','.join(LIST_FIELDS)}",
    ]


def sacct_detail_argv(job_id: str) -> list[str]:
    """The old backend's ``sacct -j ID -p -X -n -o ...`` (the id is validated by the caller)."""
    return [
        "sacct",
        f"--jobs={job_id}",
        "--parsable",
        "--allocations",
        "--noheader",
        f"--format={','.join(DETAIL_FIELDS)}",
    ]


def top_argv(job_id: str, nodes: str, node_count: int) -> list[str]:
    """``top -b -n 1`` on every node of a running job, inside it (srun --overlap), output labelled."""
    return probe_argv(job_id, nodes, node_count, script=TOP_SCRIPT)
