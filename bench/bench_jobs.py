"""Benchmark of the jobs list: GET .../jobs with 1,000 finished jobs next to the same sacct over OpenSSH.

Prints, in one run, for a user with at least 1,000 finished jobs in one cluster's accounting:
- the median latency of GET /api/v1/clusters/<cluster>/jobs (sacct + squeue --json, merged) over HTTP
  against a real waitress server of the service in this process, warm (pooled SSH connection);
- the same sacct argv through OpenSSH with a persistent ControlMaster, and sacct followed by the
  same squeue (the two commands the service runs), and the ratios;
- GET /api/v1/jobs (every cluster in parallel) next to the slowest single cluster's list.

It makes the history itself (idempotent: only what is missing) as held jobs named hcc-bench-history
submitted as the user, released and at once cancelled: each is a finished (CANCELLED) job in
accounting (a few may start and complete first). A job
array of `true` would run them, but on this bed each task costs about 2.5 s of scheduling (two
CPUs, measured: 30 tasks in 74 s), so 1,000 would take 20-40 minutes and, with FIFO priority,
hold up every other job on the cluster meanwhile.

Finished jobs stay in slurmctld for MinJobAge (300 s here), and squeue --json on 22.05 prints the
whole queue whatever the filter, so the list is measured twice: right after the history is made
(slurmctld still holds the 1,000 jobs) and, unless --no-purge-wait, once slurmctld has let them go.

Run as root with the test bed up:  .venv/bin/python bench/bench_jobs.py [--cluster alpha] [--user bob]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

# bench/ is on sys.path as the running script's directory: see common.py
from common import ENDPOINTS, Client, close_master, in_process, registry, settings, ssh_argv

from hcc_federation.jobs.commands import new_delimiter, sacct_list_argv, squeue_argv
from hcc_federation.jobs.parsers import base_state
from hcc_federation.jobs.validation import FINISHED_STATES, validate_since

HISTORY_NAME = "hcc-bench-history"


# --------------------------------------------------------------------------------------------
# The history: 1,000 finished jobs of one user on one cluster


def local_slurm(cluster: str, user: str | None, argv: list[str], stdin: bytes | None = None) -> str:
    """A Slurm command on the bed's login host, as ``user`` (root if None), against ``cluster``."""
    env = ["env", f"SLURM_CONF={ENDPOINTS['clusters'][cluster]['slurm_conf']}"]
    prefix = ["runuser", "-u", user, "--"] if user else []
    done = subprocess.run(
        [*prefix, *env, *argv], input=stdin, capture_output=True, check=True, timeout=120, cwd="/tmp"
    )
    return done.stdout.decode()


def history_records(cluster: str, user: str) -> list[str]:
    """The states of the user's hcc-bench-history jobs that accounting knows, in the last 7 days."""
    out = local_slurm(
        cluster,
        None,
        [
            "sacct",
            "-X",
            "-n",
            "-P",
            f"--user={user}",
            "--starttime=now-7days",
            f"--name={HISTORY_NAME}",
            "-o",
            "State",
        ],
    )
    return [base_state(line) for line in out.splitlines() if line]


def history_count(cluster: str, user: str) -> int:
    return sum(1 for state in history_records(cluster, user) if state in FINISHED_STATES)


def make_history(cluster: str, user: str, wanted: int) -> float:
    """Make the missing finished jobs and wait until accounting has them all; seconds spent."""
    started = time.monotonic()
    script = (
        b"#!/bin/sh\n#SBATCH --time=1\n#SBATCH --mem=1M\n#SBATCH --hold\n#SBATCH --output=/dev/null\ntrue\n"
    )
    argv = ["sbatch", "--parsable", f"--job-name={HISTORY_NAME}", "--chdir=/tmp"]
    for _attempt in range(3):
        missing = wanted - history_count(cluster, user)
        if missing <= 0:
            return time.monotonic() - started
        known = len(history_records(cluster, user))
        print(f"making {missing} finished jobs of {user} on {cluster} ...", flush=True)
        with ThreadPoolExecutor(max_workers=4) as executor:
            ids = list(
                executor.map(lambda _: local_slurm(cluster, user, argv, script).strip(), range(missing))
            )
        # A job cancelled while held never became eligible, and slurmctld then never tells
        # accounting about it (checked on 22.05). Released, it is recorded (as PENDING) once the
        # scheduler has looked at it, a hundred or so per pass: wait for that, then cancel the
        # ones still pending (the few that started meanwhile just run `true`).
        for chunk in range(0, len(ids), 200):
            local_slurm(cluster, user, ["scontrol", "release", ",".join(ids[chunk : chunk + 200])])
        deadline = time.monotonic() + 300
        while len(history_records(cluster, user)) < known + len(ids) and time.monotonic() < deadline:
            time.sleep(2)
        local_slurm(cluster, user, ["scancel", f"--name={HISTORY_NAME}", "--state=PENDING"])
        deadline = time.monotonic() + 300
        while history_count(cluster, user) < known + len(ids) and time.monotonic() < deadline:
            time.sleep(2)
    if history_count(cluster, user) < wanted:
        raise SystemExit("accounting did not record the jobs")
    return time.monotonic() - started


def in_controller(cluster: str, user: str) -> int:
    """How many of the user's history jobs slurmctld still holds (squeue --json prints them all)."""
    document = json.loads(local_slurm(cluster, None, ["squeue", "--json", "--states=all"]))
    return sum(
        1 for job in document["jobs"] if job.get("user_name") == user and job.get("name") == HISTORY_NAME
    )


# --------------------------------------------------------------------------------------------
# Measurements


def measure(port: int, token: str, cluster: str, user: str, control: str, rounds: int) -> dict:
    """Interleaved rounds (each operation once per round), so that a drift (slurmctld purging
    finished jobs, another test run's load) touches every figure alike."""
    client = Client(port, timeout=120)
    counts: dict[str, int] = {}

    def get(path: str):
        def call():
            status, body = client.call("GET", path, token=token)
            assert status == 200, body[:500]
            document = json.loads(body)
            assert not document.get("errors"), document["errors"]
            counts[path] = len(document["jobs"])

        return call

    def ssh(*commands: list[str]):
        base = ssh_argv(cluster, user, control)

        def call():
            for argv in commands:
                subprocess.run([*base, shlex.join(argv)], check=True, capture_output=True)

        return call

    sacct = sacct_list_argv(user, validate_since(None), new_delimiter())
    operations = {f"list {name}": get(f"/api/v1/clusters/{name}/jobs") for name in ENDPOINTS["clusters"]}
    operations["federated"] = get("/api/v1/jobs")
    operations["sacct"] = ssh(sacct)
    operations["sacct+squeue"] = ssh(sacct, squeue_argv(user))
    for call in operations.values():
        call()  # warm: pooled connection and ControlMaster made, page cache hot
    samples: dict = {name: [] for name in operations}
    for _ in range(rounds):
        for name, call in operations.items():
            start = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - start) * 1000)
    samples["list"] = samples[f"list {cluster}"]
    samples["counts"] = counts
    return samples


def report(title: str, cluster: str, figures: dict, rounds: int) -> None:
    med = statistics.median
    count = figures["counts"][f"/api/v1/clusters/{cluster}/jobs"]
    print(f"\n{title}: median of {rounds} (loopback, 2 cores); the list returned {count} jobs")
    print(f"  GET /api/v1/clusters/{cluster}/jobs (service, warm)      {med(figures['list']):8.1f} ms")
    print(f"  the same sacct, OpenSSH ControlMaster               {med(figures['sacct']):8.1f} ms")
    print(f"  the same sacct + squeue --json, ControlMaster       {med(figures['sacct+squeue']):8.1f} ms")
    ratio = med(figures["list"]) / med(figures["sacct"])
    print(f"  ratio service / sacct                               {ratio:8.2f}")
    ratio = med(figures["list"]) / med(figures["sacct+squeue"])
    print(f"  ratio service / (sacct + squeue)                    {ratio:8.2f}")
    singles = {name: med(figures[f"list {name}"]) for name in ENDPOINTS["clusters"]}
    slowest = max(singles, key=singles.get)
    for name, value in singles.items():
        print(f"  GET /api/v1/clusters/{name}/jobs                        {value:8.1f} ms")
    print(f"  GET /api/v1/jobs (all clusters in parallel)         {med(figures['federated']):8.1f} ms")
    ratio = med(figures["federated"]) / singles[slowest]
    print(f"  ratio federated / slowest single ({slowest})          {ratio:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cluster", default="alpha", choices=sorted(ENDPOINTS["clusters"]))
    parser.add_argument("--user", default="bob", help="a test user whose lists other tests barely read")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--no-purge-wait", action="store_true", help="skip the second measurement")
    args = parser.parse_args()
    spent = make_history(args.cluster, args.user, args.jobs)
    total = history_count(args.cluster, args.user)
    print(f"history: {total} finished {HISTORY_NAME} jobs ({spent:.0f} s to make)")

    import logging

    logging.basicConfig(level=logging.WARNING)
    with (
        registry() as db_path,
        tempfile.TemporaryDirectory(dir="/tmp") as ctl,
        in_process(settings(db_path)) as (_, port),
    ):
        token = Client(port, timeout=120).login(args.user)
        control = os.path.join(ctl, "cm")
        try:
            held = in_controller(args.cluster, args.user)
            first = measure(port, token, args.cluster, args.user, control, args.rounds)
            title = f"slurmctld still holds {held} of them" if held else "accounting history only"
            report(title, args.cluster, first, args.rounds)
            if not args.no_purge_wait and held:
                print("\nwaiting for slurmctld to purge them (MinJobAge) ...", flush=True)
                deadline = time.monotonic() + 900
                while in_controller(args.cluster, args.user):
                    if time.monotonic() > deadline:
                        raise SystemExit("slurmctld kept the jobs for 15 minutes")
                    time.sleep(10)
                second = measure(port, token, args.cluster, args.user, control, args.rounds)
                report("accounting history only", args.cluster, second, args.rounds)
        finally:
            close_master(args.cluster, args.user, control)


if __name__ == "__main__":
    main()
