"""Records real Slurm output for the parser tests: run as root on the test bed (`python capture.py`).

Every file here comes from this script; the tests read them with DELIMITER below.
"""

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from hcc_federation.jobs.commands import (  # noqa: E402
    SACCT_JOB_FIELDS,
    batch_script_argv,
    probe_argv,
    sacct_job_argv,
    sacct_list_argv,
    sbatch_stdin_argv,
    squeue_argv,
    sstat_argv,
)

HERE = Path(__file__).parent
DELIMITER = "|#0123456789abcdef#|"
CONF = "/var/lib/hcc-testbed/etc/slurm-alpha/slurm.conf"


def run(user, argv, stdin=None):
    out = subprocess.run(
        ["runuser", "-u", user, "--", "env", f"SLURM_CONF={CONF}", *argv],
        input=stdin,
        capture_output=True,
        timeout=60,
    )
    return out


def save(name, data):
    (HERE / name).write_bytes(data)
    print("wrote", name, len(data))


def main():
    work = Path(f"/home/alice/capture-{uuid.uuid4().hex[:8]}")
    run("alice", ["mkdir", "-p", str(work)])
    burn = (
        "#!/bin/bash\n"
        "srun python3 -c 'import time; b = bytearray(50 * 1024 * 1024); t = time.time()\n"
        "while time.time() - t < 20: pass'\n"
    )
    job = (
        run(
            "alice",
            sbatch_stdin_argv(str(work), "capture-burn") + ["--mem=100M", "-t", "1"],
            burn.encode(),
        )
        .stdout.decode()
        .strip()
    )
    name_job = (
        run(
            "alice",
            sbatch_stdin_argv(str(work), 'a|b "c" ü') + ["--mem=10M", "-t", "1", "--hold"],
            b"#!/bin/sh\nsleep 1\n",
        )
        .stdout.decode()
        .strip()
    )
    for _ in range(100):
        q = json.loads(run("alice", ["squeue", "--json"]).stdout)
        states = {str(j["job_id"]): j["job_state"] for j in q["jobs"]}
        if states.get(job) == "RUNNING":
            break
        time.sleep(0.3)
    time.sleep(4)  # let jobacct_gather sample (every 2 s) and the step start
    save("squeue.json", run("alice", squeue_argv("alice")).stdout)
    save("sstat_running.txt", run("alice", sstat_argv(job)).stdout)
    nodes = [j for j in q["jobs"] if str(j["job_id"]) == job][0]["nodes"]
    save("probe_running.txt", run("alice", probe_argv(job, nodes, 1)).stdout)
    save("sacct_list.txt", run("alice", sacct_list_argv("alice", "2026-11-01", DELIMITER)).stdout)
    save("sacct_job_running.txt", run("alice", sacct_job_argv(job, DELIMITER)).stdout)
    save("batch_script.txt", run("alice", batch_script_argv(job)).stdout)
    bad = run("alice", [*sbatch_stdin_argv(str(work)), "--partition=nosuchpartition"], b"#!/bin/sh\ntrue\n")
    save("sbatch_bad_partition.stderr", bad.stderr)
    bad = run("alice", sbatch_stdin_argv(str(work)), b"#!/bin/sh\n#SBATCH --no-such-option\ntrue\n")
    save("sbatch_bad_directive.stderr", bad.stderr)
    ok = run("alice", sbatch_stdin_argv(str(work)) + ["--hold"], b"#!/bin/sh\ntrue\n").stdout
    save("sbatch_ok.txt", ok)
    run("alice", ["scancel", job, name_job, ok.decode().strip()])
    print("job", job, "named job", name_job, "work dir", work)


def capture_list_memory():
    """The list's ReqMem next to ReqTRES for the same jobs (`python capture.py memory`).

    Jobs asking memory per CPU, per node and not at all, submitted held, released and cancelled
    once accounting has them (a job cancelled while held is never recorded).
    """
    name = f"hcc-capture-mem-{uuid.uuid4().hex[:6]}"
    ids = []
    for options in (["--mem-per-cpu=100", "-n", "2"], ["--mem=300", "-N", "1"], ["--mem=1G", "-n", "2"], []):
        argv = ["sbatch", "--parsable", "--hold", "-t", "1", "-o", "/dev/null", "--chdir=/tmp", "-J", name]
        ids.append(run("alice", [*argv, *options, "--wrap", "true"]).stdout.decode().strip())
    run("alice", ["scontrol", "release", ",".join(ids)])
    by_name = ["--name=" + name]
    for _ in range(60):
        listed = run("alice", ["sacct", "-X", "-n", "-P", "--starttime=now-1hour", *by_name, "-o", "JobID"])
        if len(listed.stdout.splitlines()) >= len(ids):
            break
        time.sleep(1)
    run("alice", ["scancel", *by_name, "--state=PENDING"])
    time.sleep(2)
    new = sacct_list_argv("alice", "now-1hour", DELIMITER) + by_name
    old = [a if not a.startswith("--format=") else "--format=" + ",".join(SACCT_JOB_FIELDS) for a in new]
    save("sacct_list_reqmem.txt", run("alice", new).stdout)
    save("sacct_list_reqtres.txt", run("alice", old).stdout)


if __name__ == "__main__":
    capture_list_memory() if sys.argv[1:] == ["memory"] else main()
