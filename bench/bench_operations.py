"""Benchmark of long file operations against OpenSSH on the same loopback, on the test bed.

Prints, in one run, against a separate `pserve` (waitress) process of the service, as alice:
- a tree of --tree-mib (default 2048 MiB, in --files files) copied on alpha as an operation
  (POST /clusters/alpha/operations, polled until done) next to `cp -a` run over OpenSSH;
- one --cross-mib file (default 1024 MiB) copied alpha -> beta (pushed by a Slurm job with a signed
  certificate) and beta -> alpha (relayed by the service) next to `scp` from alpha to beta run on
  alpha (alice's key through a forwarded agent), with the service's resident memory around the relay.

Run as root with the test bed up:  .venv/bin/python bench/bench_operations.py [--tree-mib 2048]
    [--files 256] [--cross-mib 1024] [--runner job|detached]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

# bench/ is on sys.path as the running script's directory: see common.py
from common import ENDPOINTS, USERS, Client, pserve, registry, settings, ssh_argv, vm_kib

MiB = 1024 * 1024


def make_files(directory: Path, total_mib: int, files: int, uid: int) -> None:
    directory.mkdir(parents=True)
    each = max(1, total_mib * MiB // files)
    for i in range(files):
        with open(directory / f"f{i:05d}", "wb") as out:
            subprocess.run(["head", "-c", str(each), "/dev/urandom"], stdout=out, check=True)
    subprocess.run(["chown", "-R", str(uid), str(directory)], check=True)


POLL = 1.0


def run_operation(client: Client, token: str, path: str, body: dict, rss_of: int | None = None) -> tuple:
    """POST the operation, poll it every POLL s until it ends: (seconds, final operation, peak RSS KiB)."""
    settle()
    started = time.perf_counter()
    status, answer = client.call("POST", path, body, token)
    assert status == 202, answer
    op = json.loads(answer)
    url = f"/api/v1/clusters/{op['cluster']}/operations/{op['id']}"
    peak = 0
    while True:
        status, answer = client.call("GET", url, token=token)
        assert status == 200, answer
        op = json.loads(answer)
        if rss_of:
            peak = max(peak, vm_kib(rss_of, "VmRSS")[0])
        if op["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(POLL)
    elapsed = time.perf_counter() - started
    assert op["state"] == "done", op
    return elapsed, op, peak


def settle() -> None:
    """Write back dirty pages first: the files just made (or copied) would otherwise be flushed during
    whichever copy comes next, and the order of the runs, not the tools, would decide."""
    subprocess.run(["sync"], check=True)


def timed(argv: list[str], env: dict | None = None) -> float:
    settle()
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def rate(mib: float, seconds: float) -> str:
    return f"{seconds:6.2f} s  {mib / seconds:7.1f} MiB/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree-mib", type=int, default=2048)
    parser.add_argument("--files", type=int, default=256)
    parser.add_argument("--cross-mib", type=int, default=1024)
    parser.add_argument("--runner", choices=("job", "detached"), default="job")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between two GETs of an operation")
    args = parser.parse_args()
    global POLL
    POLL = args.poll
    alice = USERS["alice"]
    work = Path(f"/home/alice/bench-ops-{uuid.uuid4().hex[:8]}")
    overrides = {
        "hcc.cluster.alpha.command_timeout": "120",
        "hcc.cluster.beta.command_timeout": "120",
    }
    if args.runner == "job":
        overrides["hcc.cluster.alpha.transfer_partition"] = ENDPOINTS["clusters"]["alpha"]["partition"]
    try:
        make_files(work / "tree", args.tree_mib, args.files, alice["uid"])
        make_files(work / "one", args.cross_mib, 1, alice["uid"])
        big = work / "one" / "f00000"
        subprocess.run(["chown", str(alice["uid"]), str(work)], check=True)
        with registry() as db, pserve(settings(db, overrides=overrides), threads=4) as (port, process):
            client = Client(port, timeout=300)
            token = client.login("alice")
            print(
                f"# {args.tree_mib} MiB in {args.files} files on alpha ({args.runner}), {args.cross_mib} MiB "
                f"between alpha and beta, polled every {POLL:g} s; tree: best of two runs each, alternated; "
                "between clusters: one run each (shared machine)"
            )

            # 1. a tree on one cluster: operation, cp, cp, operation (best of two each, so that
            # neither always runs first)
            def operation(n: int) -> float:
                body = {"kind": "copy", "path": str(work / "tree"), "to": str(work / f"tree-api{n}")}
                seconds, _, _ = run_operation(client, token, "/api/v1/clusters/alpha/operations", body)
                return seconds

            def cp(n: int) -> float:
                command = ["cp", "-a", "--", str(work / "tree"), str(work / f"tree-cp{n}")]
                return timed([*ssh_argv("alpha", "alice"), shlex.join(command)])

            api_times, cp_times = [operation(1)], [cp(1)]
            cp_times.append(cp(2))
            api_times.append(operation(2))
            api, cp_best = min(api_times), min(cp_times)
            print(f"tree copy   operation ({args.runner:8}) {rate(args.tree_mib, api)}")
            ratio = api / cp_best
            print(f"tree copy   ssh cp -a              {rate(args.tree_mib, cp_best)}   ratio {ratio:4.2f}")

            # 2. one file between clusters
            push, op, _ = run_operation(
                client,
                token,
                "/api/v1/operations",
                {
                    "kind": "copy",
                    "from": {"cluster": "alpha", "path": str(big)},
                    "to": {"cluster": "beta", "path": str(work / "pushed")},
                },
            )
            assert op["route"] == "push", op
            before = vm_kib(process.pid, "VmRSS")[0]
            relay, op, peak = run_operation(
                client,
                token,
                "/api/v1/operations",
                {
                    "kind": "copy",
                    "from": {"cluster": "beta", "path": str(big)},
                    "to": {"cluster": "alpha", "path": str(work / "relayed")},
                },
                rss_of=process.pid,
            )
            assert op["route"] == "relay", op
        scp = scp_between(work, big, work / "scp")
        for name in ("pushed", "relayed", "scp"):
            assert (work / name).stat().st_size == big.stat().st_size, name
        print(f"alpha->beta operation (push, job)  {rate(args.cross_mib, push)}   ratio {push / scp:4.2f}")
        print(f"beta->alpha operation (relay)      {rate(args.cross_mib, relay)}   ratio {relay / scp:4.2f}")
        print(f"alpha->beta scp on alpha           {rate(args.cross_mib, scp)}")
        print(f"service RSS during the relay: {before / 1024:.0f} MiB before, {peak / 1024:.0f} MiB peak")
    finally:
        subprocess.run(["rm", "-rf", "--", str(work)], check=False)


def scp_between(work: Path, source: Path, target: Path) -> float:
    """`scp` run on alpha as alice to beta, authenticated by alice's key through a forwarded agent."""
    beta = ENDPOINTS["clusters"]["beta"]
    known = work / "beta_known_hosts"
    known.write_bytes(Path(beta["known_hosts"]).read_bytes())
    os.chown(known, USERS["alice"]["uid"], -1)
    with tempfile.TemporaryDirectory() as tmp:
        sock = f"{tmp}/agent"
        agent = subprocess.run(["ssh-agent", "-a", sock], capture_output=True, text=True, check=True)
        pid = agent.stdout.split("SSH_AGENT_PID=")[1].split(";")[0]
        env = {**os.environ, "SSH_AUTH_SOCK": sock}
        try:
            subprocess.run(["ssh-add", "-q", USERS["alice"]["key"]], env=env, check=True, capture_output=True)
            remote = [
                "scp",
                "-q",
                "-o",
                f"UserKnownHostsFile={known}",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-P",
                str(beta["ssh_port"]),
                "--",
                str(source),
                f"alice@{beta['ssh_host']}:{target}",
            ]
            argv = ssh_argv("alpha", "alice")
            return timed([argv[0], "-A", *argv[1:], shlex.join(remote)], env=env)
        finally:
            subprocess.run(["kill", pid], check=False)


if __name__ == "__main__":
    main()
