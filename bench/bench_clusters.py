"""Benchmark of cluster routing: GET /api/v1/clusters/alpha next to OpenSSH, on the test bed.

Prints, in one run:
- the median latency of GET /api/v1/clusters/alpha cold (a new SSH connection each time) and warm
  (pooled), measured over HTTP against a real waitress server of the service in this process;
- the same sinfo through OpenSSH with a persistent ControlMaster, and through a new `ssh` per call;
- the ratios between them;
- the throughput of 20 concurrent clients, and the service's peak memory, against a separate
  `pserve` process (its VmHWM from /proc).

Run as root with the test bed up:  .venv/bin/python bench/bench_clusters.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time

# bench/ is on sys.path as the running script's directory: see common.py
from common import Client, close_master, in_process, pserve, registry, settings, ssh_run, vm_kib

from hcc_federation.clusters.details import SINFO_ARGV

# the benchmark logs in many times from one address
SETTINGS = {"hcc.auth.throttle_max_per_address": "100000"}


def timed(fn, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def openssh(control: str | None, rounds: int) -> list[float]:
    def once():
        ssh_run("alpha", "alice", SINFO_ARGV, control)

    if control:
        once()  # the master connection is made once, outside the measurement
    samples = timed(once, rounds)
    if control:
        close_master("alpha", "alice", control)
    return samples


def cold_and_warm(rounds: int, db_path: str) -> tuple[list[float], list[float]]:
    """Cold and warm latency over HTTP against a waitress server of the app in this process."""
    with in_process(settings(db_path, overrides=SETTINGS)) as (app, port):
        client = Client(port)
        token = client.login("alice")
        pool = app.registry.hcc_pool

        def get():
            status, body = client.call("GET", "/api/v1/clusters/alpha", token=token)
            assert status == 200, body

        def cold():
            pool.close_all()
            get()

        cold_samples = timed(cold, rounds)
        get()
        warm_samples = timed(get, rounds)
    return cold_samples, warm_samples


def concurrent(db_path: str, clients: int, requests_each: int) -> tuple[float, int]:
    """Requests per second of `clients` concurrent clients against a pserve process; its peak RSS."""
    with pserve(settings(db_path, overrides=SETTINGS), threads=16) as (port, server):
        names = ["alice", "bob"]
        tokens = [Client(port).login(names[i % 2]) for i in range(clients)]
        warm = Client(port)
        for token in tokens[:2]:
            warm.call("GET", "/api/v1/clusters/alpha", token=token)
        errors = []

        def worker(token: str):
            c = Client(port)
            for _ in range(requests_each):
                status, _ = c.call("GET", "/api/v1/clusters/alpha", token=token)
                if status != 200:
                    errors.append(status)

        threads = [threading.Thread(target=worker, args=(t,)) for t in tokens]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        (hwm_kib,) = vm_kib(server.pid, "VmHWM")
        if errors:
            print(f"  errors during the concurrent run: {errors[:5]} ({len(errors)})")
        return clients * requests_each / elapsed, hwm_kib


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=25, help="requests per client in the concurrent run")
    args = parser.parse_args()
    with registry() as db_path:
        cold, warm = cold_and_warm(args.rounds, db_path)
        with tempfile.TemporaryDirectory(dir="/tmp") as ctl:
            master = openssh(os.path.join(ctl, "cm"), args.rounds)
        fresh = openssh(None, args.rounds)
        rps, hwm = concurrent(db_path, args.clients, args.requests)
    med = statistics.median
    print(f"GET /api/v1/clusters/alpha (sinfo as alice), median of {args.rounds}, loopback, 2 cores")
    print(f"  service, cold (new SSH connection)    {med(cold):8.1f} ms")
    print(f"  service, warm (pooled connection)     {med(warm):8.1f} ms")
    print(f"  OpenSSH ControlMaster, same sinfo     {med(master):8.1f} ms")
    print(f"  OpenSSH, new ssh per call             {med(fresh):8.1f} ms")
    print(f"  ratio warm / ControlMaster            {med(warm) / med(master):8.2f}")
    print(f"  ratio cold / warm                     {med(cold) / med(warm):8.2f}")
    print(f"  ratio new ssh / warm                  {med(fresh) / med(warm):8.2f}")
    print(f"{args.clients} concurrent clients x {args.requests} requests (pserve, 16 threads)")
    print(f"  throughput                            {rps:8.1f} requests/s")
    print(f"  service peak memory (VmHWM)           {hwm / 1024:8.1f} MiB")


if __name__ == "__main__":
    main()
