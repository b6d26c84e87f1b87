"""A ``since`` that has not begun on the cluster yet: an empty history, not sacct's error as a 502."""

from pathlib import Path

from hcc_federation.api.error_map import mapping_for
from hcc_federation.jobs.client import SlurmClient
from hcc_federation.jobs.errors import SlurmError
from hcc_federation.jobs.parsers import parse_squeue_json
from hcc_federation.remote.result import CommandResult

DATA = Path(__file__).parent / "data" / "slurm"
# what sacct 22.05 on the test bed printed for a --starttime of tomorrow under SLURM_TIME_FORMAT=%s
SACCT_FUTURE = b"sacct: error: Start time (1796256000) requested is after end time (1796192770).\n"


class FutureSinceRunner:
    """sacct refuses the start time as the real one does; squeue answers with a recorded queue."""

    def __call__(self, argv, stdin, timeout):
        if "sacct" in argv:
            return CommandResult(tuple(argv), 1, b"", SACCT_FUTURE)
        if "squeue" in argv:
            return CommandResult(tuple(argv), 0, (DATA / "squeue.json").read_bytes(), b"")
        raise AssertionError(f"unexpected command {argv}")


def test_a_since_after_the_clusters_today_lists_only_the_queue():
    client = SlurmClient(FutureSinceRunner(), clock=lambda: 1796002600.0)
    jobs = client.list_jobs("alice", since="2030-01-01")
    # no history can start after now; the live queue is listed whatever the day, as for any since
    queued = parse_squeue_json((DATA / "squeue.json").read_text(), 1796002600, user="alice")
    assert sorted(job["id"] for job in jobs) == sorted(job["id"] for job in queued)


def test_other_sacct_failures_still_fail():
    class Broken(FutureSinceRunner):
        def __call__(self, argv, stdin, timeout):
            if "sacct" in argv:
                return CommandResult(tuple(argv), 1, b"", b"sacct: error: Problem talking to the database")
            return super().__call__(argv, stdin, timeout)

    client = SlurmClient(Broken(), clock=lambda: 1796002600.0)
    try:
        client.list_jobs("alice", since="2030-01-01")
    except SlurmError as exc:
        assert mapping_for(exc).status >= 500
    else:
        raise AssertionError("a broken sacct must not give an empty list")
