"""Memory of the service over many large transfers: does its RSS grow, why, and is it bounded?

Starts a real `pserve` (waitress, 16 threads as production.ini, MariaDB registry) once per variant,
logs in as alice and runs ``--rounds`` rounds of one 100 MiB download (GET /files/content, streamed by
`dd` on an exec channel) and one 100 MiB upload (PUT /files/content, SFTP writes) on alpha, one after
the other, printing the server's VmRSS after each round (from /proc/<pid>/status). Variants differ
only in the server's environment, so they tell glibc malloc's part from the code's:
- ``default``: as deployed (no MALLOC_* variable: the service pins glibc's mmap threshold and caps
  its arenas at 2 itself, see hcc_federation/memory.py; any MALLOC_* variable or glibc.malloc
  tunable makes it leave malloc alone);
- ``perthread``: the mmap threshold pinned as the service pins it, but glibc's own arena count (one
  per thread that meets contention, up to 8 per core): what the service did before capping arenas;
- ``mmap256k``: MALLOC_MMAP_THRESHOLD_=262144 (a fixed threshold: blocks of 256 KiB and more are
  always mmap()ed and given back to the kernel on free, instead of the dynamic threshold that rises
  to the size of the first freed mmapped block and keeps later blocks in the heap of each arena).
waitress runs with production.ini's options (its output buffer per connection: 2 MiB).

Run as root with the test bed up:
    .venv/bin/python bench/bench_memory.py [--rounds 20] [--size-mib 100] [--variants default perthread]
        [--only download]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# bench/ is on sys.path as the running script's directory: see common.py
from common import (
    USERS,
    Client,
    PatternBody,
    deployed_server_options,
    mysql_registry,
    proc_figures,
    pserve,
    settings,
)

MiB = 1024 * 1024
THREADS = 16
# waitress as production.ini sets it up: its output buffer per connection is 2 MiB there
# (--server-option outbuf_high_watermark=16777216: waitress's default)
SERVER = deployed_server_options()
VARIANTS = {
    "default": {},
    "perthread": {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1048576"},
    "mmap256k": {"MALLOC_MMAP_THRESHOLD_": "262144"},
}


def download(client: Client, token: str, path: str, size: int) -> None:
    query = urllib.parse.urlencode({"path": path})
    client.conn.request("GET", f"/api/v1/clusters/alpha/files/content?{query}", headers=client.auth(token))
    response = client.conn.getresponse()
    assert response.status == 200, response.read()[:300]
    got = 0
    while data := response.read(MiB):
        got += len(data)
    assert got == size, (got, size)


def upload(client: Client, token: str, path: str, size: int, block: bytes) -> None:
    query = urllib.parse.urlencode({"path": path})
    status, body = client.call(
        "PUT",
        f"/api/v1/clusters/alpha/files/content?{query}",
        PatternBody(size, block),
        token=token,
        headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
    )
    assert status in (200, 201), body[:300]


def timed(fn, *args) -> float:
    began = time.perf_counter()
    fn(*args)
    return time.perf_counter() - began


def run_variant(name: str, env: dict[str, str], url: str, work: str, args: argparse.Namespace) -> list[float]:
    size = args.size_mib * MiB
    block = os.urandom(MiB)
    overrides = {
        "hcc.database.url": url,
        "hcc.cluster.alpha.command_timeout": "120",
        "hcc.files.max_upload_bytes": str(4 * size),
    }
    server = {**SERVER, **dict(option.split("=", 1) for option in args.server_option)}
    with pserve(settings("", ["alpha"], overrides), THREADS, server, env) as (port, process):
        clients = [Client(port, timeout=300, blocksize=MiB) for _ in range(args.parallel)]
        token = clients[0].login("alice")
        start = proc_figures(process.pid)
        rss = []
        took: dict[str, list[float]] = {"download": [], "upload": []}

        def transfer(index: int) -> None:
            client = clients[index]
            if args.only != "upload":
                took["download"].append(timed(download, client, token, f"{work}/big.bin", size))
            if args.only != "download":
                up = f"{work}/up-{index}.bin"
                took["upload"].append(timed(upload, client, token, up, size, block))

        began = time.monotonic()
        with ThreadPoolExecutor(args.parallel) as executor:
            for _ in range(args.rounds):
                list(executor.map(transfer, range(args.parallel)))
                rss.append(proc_figures(process.pid)["rss_mib"])
        elapsed = time.monotonic() - began
        end = proc_figures(process.pid)
        for client in clients:
            client.conn.close()
    shown = " ".join(f"{v:.0f}" for v in rss)
    print(
        f"{name:>9} {' '.join(f'{k}={v}' for k, v in env.items()) or '(as deployed)'}: RSS after login "
        f"{start['rss_mib']:.1f} MiB, after {args.rounds} rounds {end['rss_mib']:.1f} MiB "
        f"(peak {end['hwm_mib']:.1f}), {end['threads']} threads, {elapsed:.0f} s",
        flush=True,
    )
    print(f"           RSS after each round (MiB): {shown}", flush=True)
    speeds = "  ".join(
        f"{kind} {args.size_mib / statistics.median(times):.0f} MiB/s each"
        for kind, times in took.items()
        if times
    )
    print(f"           median throughput: {speeds}", flush=True)
    return rss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=1, help="clients transferring at once per round")
    parser.add_argument(
        "--server-option",
        action="append",
        default=[],
        help="KEY=VALUE for waitress, e.g. outbuf_high_watermark",
    )
    parser.add_argument("--only", choices=["download", "upload"], help="one kind of transfer per round")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    uid = USERS["alice"]["uid"]
    work = Path(f"/home/alice/hcc-bench-memory-{uuid.uuid4().hex[:10]}")
    work.mkdir()
    try:
        block = os.urandom(MiB)
        with (work / "big.bin").open("wb") as out:
            for _ in range(args.size_mib):
                out.write(block)
        for item in (work, work / "big.bin"):
            shutil.chown(item, uid, uid)
        print(
            f"{args.rounds} rounds of {args.parallel} x a {args.size_mib} MiB download + upload,"
            f" pserve with {THREADS} threads,"
            " alice on alpha; loopback, 2 cores"
        )
        with mysql_registry() as url:
            for name in args.variants:
                run_variant(name, VARIANTS[name], url, str(work), args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
