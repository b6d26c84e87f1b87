"""SlurmClient against the test bed's real Slurm clusters, as real users (runuser, not yet SSH)."""

import os
import subprocess
import time
import uuid

import pytest

from hcc_federation.api.error_map import mapping_for
from hcc_federation.errors import InvalidArgument
from hcc_federation.jobs.client import SlurmClient
from hcc_federation.jobs.errors import JobFinished, JobForbidden, JobNotFound, SlurmRefused
from hcc_federation.jobs.schemas import JOB_FIELDS
from hcc_federation.remote.result import CommandResult
from tests.helpers import alice_work_dir, jobs_cancelled_afterwards, wait_for

pytestmark = pytest.mark.slow

CLUSTERS = ["alpha", "beta"]
# Holds 50 MB and spins for at most 25 s in an srun step, so sstat has a step to sample.
BURN = (
    "#!/bin/bash\n"
    "#SBATCH --time=1\n"
    "#SBATCH --mem=100M\n"
    "srun python3 -c 'import time\n"
    "block = bytearray(50 * 1024 * 1024)\n"
    "end = time.time() + 25\n"
    "while time.time() < end: pass'\n"
)
SLEEP = "#!/bin/sh\n#SBATCH --time=1\n#SBATCH --mem=10M\nsleep 30\n"


class LocalRunner:
    """Runs argv as ``user`` against one cluster's slurm.conf; counts what it ran."""

    def __init__(self, user: str, conf: str):
        self.user = user
        self.conf = conf
        self.calls: list[list[str]] = []

    def __call__(self, argv, stdin, timeout):
        self.calls.append(list(argv))
        done = subprocess.run(
            ["runuser", "-u", self.user, "--", "env", f"SLURM_CONF={self.conf}", *argv],
            input=stdin,
            capture_output=True,
            timeout=timeout,
            cwd="/",
        )
        return CommandResult(tuple(argv), done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def runners(clusters):
    return {
        (cluster, user): LocalRunner(user, clusters[cluster]["slurm_conf"])
        for cluster in CLUSTERS
        for user in ("alice", "bob")
    }


@pytest.fixture
def work_dir(users):
    with alice_work_dir(users, "hcc-slurm") as path:
        yield path


@pytest.fixture
def started(clusters):
    """Job ids to scancel (as root, whoever owns them) whatever the test's outcome."""
    with jobs_cancelled_afterwards(clusters) as jobs:
        yield jobs


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_job_lifecycle(cluster, runners, clusters, users, work_dir, started):
    alice = SlurmClient(runners[(cluster, "alice")])
    bob = SlurmClient(runners[(cluster, "bob")])
    other = SlurmClient(runners[(next(c for c in CLUSTERS if c != cluster), "alice")])
    tag = uuid.uuid4().hex[:8]
    name = f'a|b "c" ü {tag}'

    script_path = work_dir / "sleep job.sh"
    script_path.write_text(SLEEP)
    os.chown(script_path, users["alice"]["uid"], -1)
    by_path = alice.submit_script_path("alice", str(script_path))
    started.append((cluster, by_path))
    inline = alice.submit_script("alice", BURN, str(work_dir), name=name)
    started.append((cluster, inline))

    # Both appear at once (squeue), with the exact name even though accounting mangles quotes.
    listed = {job["id"]: job for job in alice.list_jobs("alice")}
    assert {by_path, inline} <= set(listed)
    assert listed[inline]["name"] == name
    assert listed[by_path]["work_dir"] == str(work_dir)  # ran in the script's own directory
    assert listed[inline]["user"] == "alice" and listed[inline]["partition"] == clusters[cluster]["partition"]
    assert listed[inline]["memory"] == 100 and listed[inline]["time_limit_seconds"] == 60
    assert set(JOB_FIELDS) <= set(listed[inline])

    detail = alice.get_job("alice", inline, with_usage=False)
    assert detail["name"] == name and detail["work_dir"] == str(work_dir)
    assert detail["script"] == BURN

    # Running, then usage shows the python step's CPU and its 50 MB on the node.
    wait_for(lambda: alice.get_job("alice", inline, with_usage=False)["state"] == "RUNNING")

    def busy():
        usage = alice.get_job("alice", inline)["usage"]
        nodes = usage["nodes"] if usage else []
        node = nodes[0] if nodes else None
        steps = {step["id"]: step for step in usage["steps"]} if usage else {}
        step = steps.get(f"{inline}.0")
        if node and step and node["cpu_percent"] > 10 and (step["max_rss_bytes"] or 0) > 50 * 2**20:
            return usage
        return None

    usage = wait_for(busy, timeout=20)
    (node,) = usage["nodes"]
    assert node["node"] == clusters[cluster]["node"] and node["scope"] == "job"
    assert node["rss_bytes"] > 50 * 2**20
    assert node["processes"][0]["command"] == "python3"

    # Another user gets 403 for both reading and cancelling; the other cluster does not know it.
    with pytest.raises(JobForbidden):
        bob.get_job("bob", inline)
    with pytest.raises(JobForbidden):
        bob.cancel_job("bob", inline)
    assert all(job["name"] != name for job in other.list_jobs("alice"))

    alice.cancel_job("alice", inline)
    alice.cancel_job("alice", by_path)
    for job_id in (inline, by_path):
        wait_for(lambda job_id=job_id: alice.get_job("alice", job_id)["state"] == "CANCELLED", timeout=30)
    with pytest.raises(JobFinished):
        alice.cancel_job("alice", inline)

    cancelled = alice.list_jobs("alice", states=["cancelled"], limit=50)
    assert all(job["state"] == "CANCELLED" for job in cancelled)
    assert inline in {job["id"] for job in cancelled}
    assert len(alice.list_jobs("alice", limit=1)) == 1


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_slurm_refusals_carry_slurms_message(cluster, runners, work_dir):
    alice = SlurmClient(runners[(cluster, "alice")])
    script = "#!/bin/sh\n#SBATCH --partition=nosuchpartition\ntrue\n"
    with pytest.raises(SlurmRefused) as caught:
        alice.submit_script("alice", script, str(work_dir))
    assert mapping_for(caught.value).status == 400
    assert "Invalid partition name specified" in caught.value.description
    with pytest.raises(SlurmRefused) as caught:
        alice.submit_script_path("alice", str(work_dir / "missing.sh"))
    assert "missing.sh" in caught.value.description


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_unknown_and_hostile_job_ids(cluster, runners):
    runner = runners[(cluster, "alice")]
    alice = SlurmClient(runner)
    with pytest.raises(JobNotFound):
        alice.get_job("alice", "999999999")
    with pytest.raises(JobNotFound):
        alice.cancel_job("alice", "999999999")
    before = len(runner.calls)
    for job_id in ["1;id", "$(id)", "../", "1\n2", ""]:
        for call in (alice.get_job, alice.cancel_job):
            with pytest.raises(InvalidArgument) as caught:
                call("alice", job_id)
            assert (mapping_for(caught.value).status, caught.value.field) == (400, "job_id")
    assert len(runner.calls) == before  # refused before anything ran


def test_list_is_quick(runners):
    alice = SlurmClient(runners[("alpha", "alice")])
    alice.list_jobs("alice")
    started = time.perf_counter()
    alice.list_jobs("alice")
    elapsed = time.perf_counter() - started
    print(f"list_jobs(alice) on alpha: {elapsed * 1000:.0f} ms")
    assert elapsed < 2.0
