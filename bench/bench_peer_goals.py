"""Every row of issue 14's goal table in one run, each next to its baseline and its goal.

Two `pserve` processes serve the service side by side on the same test bed: this checkout ("now")
and another one (`--baseline-root`, /work/main by default: "before", the figure the throughput goal
doubles). OpenSSH runs over one ControlMaster connection per user, made before the measurements.
Rows (cluster alpha; alice unless said):
1. warm `GET /files?path=/home/alice` (median) against `ls -la /home/alice` over the ControlMaster;
2. `GET /clusters/alpha` against `scontrol show partition` over the ControlMaster: as served (each
   caller's answer kept hcc.cluster.alpha.detail_cache = 5 s) and by a third server with it at 0;
3. bob's job list (at least `--jobs` finished jobs, made as bench_jobs.py makes them) against the
   cheapest sacct + squeue that give the documented fields (the list's own sacct argv, then squeue);
4. the server's CPU time (from /proc) per warm listing while 10 clients list;
5. listings per second with 10 and 100 clients, of one user and of every unlocked bed user (alice
   and bob, plus the 18 people scripts/testbed/bench-users.sh adds: the goal's 20 users; the script
   is run if they are missing), now against before, and the errors;
6. a `--entries` directory in one answer (all=true) and in all its pages of 1,000 against `ls -l` of it
   (the answers' content is checked once, outside the timings);
7. a `--size-mib` upload (PUT /files/content) against `scp`, `--upload-rounds` of each in turns:
   through Apache mod_wsgi serving this checkout and the baseline (each an Apache of its own, rendered
   from the bed's template by common.apache: TLS, daemon mode, the service user and venv), and
   through waitress;
7b. all cores: listings per second of 10 clients through this checkout under Apache mod_wsgi with
   processes=1 threads=16 and processes=2 threads=8 (and the CPU of its daemons per request), and
   through the bed's HAProxy over its two replicas against one replica (the installed copy), if up;
8. the server's RSS after `--transfers` downloads of `--size-mib` each, this checkout's and the
   baseline's, in turns (each has served the rows run before).
The machine is shared: run it a few times and read the medians together with the load printed.

Run as root with the test bed up:  .venv/bin/python bench/bench_peer_goals.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

from bench_jobs import history_count, make_history
from common import (
    BENCH_USERS,
    ENDPOINTS,
    HOSTING_PATH,
    USERS,
    Client,
    PatternBody,
    apache,
    children_cpu_s,
    close_master,
    deployed_server_options,
    mysql_registry,
    proc_figures,
    pserve,
    registry,
    settings,
    ssh_options,
    ssh_run,
    vm_kib,
)

from hcc_federation.jobs.commands import new_delimiter, sacct_list_argv, squeue_argv
from hcc_federation.jobs.validation import validate_since
from hcc_federation.settings import ClusterSettings, default

ALPHA = ENDPOINTS["clusters"]["alpha"]
MiB = 1024 * 1024
# waitress as production.ini sets it up (its output buffer per connection: see common.py)
SERVER = deployed_server_options()
SETTINGS = {"hcc.cluster.alpha.command_timeout": "120"}
# seconds the "now" server keeps a caller's cluster detail (the default)
KEPT = default(ClusterSettings, "detail_cache")
# The rows --rows can pick, as the docstring numbers them (throughput gives rows 4 and 5 together).
ROWS = ("ls", "detail", "jobs", "throughput", "whole", "upload", "cores", "rss")


def files_url(suffix: str = "", **params) -> str:
    return f"/api/v1/clusters/alpha/files{suffix}?{urllib.parse.urlencode(params)}"


class Server:
    """One server of the service (pserve, an Apache, a balancer) and a logged-in keep-alive client per
    bed user; ``process`` (whose CPU time is read) is None where it is not ours to watch."""

    def __init__(self, label: str, port: int, process: subprocess.Popen | None, tls: bool = False):
        self.label, self.port, self.process, self.tls = label, port, process, tls
        users = [name for name in USERS if not USERS[name].get("locked")]
        self.tokens = {name: Client(port, tls=tls).login(name) for name in users}
        self.client = Client(port, timeout=600, blocksize=MiB, tls=tls)

    def new_client(self, timeout: float = 120) -> Client:
        return Client(self.port, timeout=timeout, tls=self.tls)

    def cpu_s(self) -> float:
        """CPU seconds of the process and its children (an Apache's WSGI daemons are its children)."""
        if self.process is None:
            return float("nan")
        return proc_figures(self.process.pid)["cpu_s"] + children_cpu_s(self.process.pid)

    def get(self, path: str, user: str = "alice") -> bytes:
        status, body = self.client.call("GET", path, token=self.tokens[user])
        assert status == 200, (self.label, path, status, body[:300])
        return body


def interleaved_ms(calls: list, rounds: int) -> list[float]:
    """The median of each call, run in turns (each once per round), so that a drift of the shared
    machine's load touches every figure alike."""
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            call()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) * 1000 for t in times]


def throughput(server: Server, clients: int, users: list[str], seconds: float) -> tuple[float, int, float]:
    """(requests/s, errors, server CPU ms per request) of ``clients`` keep-alive clients listing
    their home directories for ``seconds``."""
    stop = time.monotonic() + seconds
    done = [0] * clients
    errors = [0] * clients
    barrier = threading.Barrier(clients + 1)

    def work(i: int) -> None:
        user = users[i % len(users)]
        client = server.new_client()
        path = files_url(path=f"/home/{user}")
        barrier.wait()
        while time.monotonic() < stop:
            try:
                status, _ = client.call("GET", path, token=server.tokens[user])
            except OSError:
                status = 0
                client = server.new_client()
            if status == 200:
                done[i] += 1
            else:
                errors[i] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    cpu_before = server.cpu_s()
    started = time.monotonic()
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    cpu = server.cpu_s() - cpu_before
    total = sum(done)
    return total / elapsed, sum(errors), (cpu / total * 1000 if total else float("nan"))


def upload(server: Server, path: str, size: int, block: bytes) -> float:
    # a connection of its own: Apache closes an idle keep-alive connection after 5 s (KeepAliveTimeout),
    # and the other uploads in between take longer, so a kept one was found closed mid-body
    server.client.conn.close()
    start = time.perf_counter()
    status, body = server.client.call(
        "PUT",
        files_url("/content", path=path),
        PatternBody(size, block),
        token=server.tokens["alice"],
        headers={"Content-Length": str(size)},
    )
    assert status in (200, 201), body[:300]
    return size / MiB / (time.perf_counter() - start)


def download(server: Server, path: str, size: int) -> None:
    conn = server.client.conn
    conn.request("GET", files_url("/content", path=path), headers=Client.auth(server.tokens["alice"]))
    response = conn.getresponse()
    assert response.status == 200, response.read()[:300]
    received = 0
    while data := response.read(MiB):
        received += len(data)
    assert received == size, (received, size)


def scp_rate(control: str, local: str, target: str, size: int) -> float:
    argv = ["scp", "-q", *ssh_options("alpha", "alice", control), "-P", str(ALPHA["ssh_port"])]
    start = time.perf_counter()
    subprocess.run([*argv, local, f"alice@{ALPHA['ssh_host']}:{target}"], check=True, capture_output=True)
    return size / MiB / (time.perf_counter() - start)


def hosted_settings(database_url: str) -> dict[str, str]:
    """The service's settings for an Apache of its own: a MariaDB registry and files that the
    service's user may read (its copy of alpha's host keys, as the bed's Apache has)."""
    known_hosts = Path(ENDPOINTS["state_dir"]) / "hcc" / "known_hosts" / "alpha"
    return settings(
        "unused",
        ["alpha"],
        {**SETTINGS, "hcc.database.url": database_url, "hcc.cluster.alpha.known_hosts": str(known_hosts)},
    )


def balancer_urls() -> list[tuple[str, str]]:
    """The bed's HAProxy and its first replica (scripts/replicas.sh), if they answer; else nothing."""
    if not HOSTING_PATH.is_file():
        return []
    replicas = json.loads(HOSTING_PATH.read_text()).get("replicas") or {}
    urls = [
        ("HAProxy, two replicas", replicas.get("url")),
        ("one replica", (replicas.get("replicas") or [{}])[0].get("url")),
    ]
    out = []
    for label, url in urls:
        try:
            status, _ = Client(int(urllib.parse.urlsplit(url).port), timeout=5).call("GET", "/api/v1/health")
        except (OSError, TypeError, ValueError):
            continue
        if status == 200:
            out.append((label, url))
    return out


def fmt_runs(rates: dict[str, list[float]]) -> str:
    return "; ".join(f"{k} " + " ".join(f"{v:.0f}" for v in values) for k, values in rates.items())


def row(what: str, now: str, base: str, ratio: float | None, goal: str) -> None:
    shown = f"{ratio:.2f}" if ratio is not None else "-"
    print(f"| {what} | {now} | {base} | {shown} | {goal} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline-root", default="/work/main", help="the checkout that serves 'before'")
    parser.add_argument("--rounds", type=int, default=21, help="median of N for single calls")
    parser.add_argument("--seconds", type=float, default=8, help="per throughput scenario")
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--transfers", type=int, default=20)
    parser.add_argument("--upload-rounds", type=int, default=3, help="uploads of each kind, in turns")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter runs, small files")
    parser.add_argument(
        "--rows",
        default=",".join(ROWS),
        help=f"comma-separated rows to run, of {','.join(ROWS)} (default: all)",
    )
    args = parser.parse_args()
    rows = set(args.rows.split(","))
    if rows - set(ROWS):
        parser.error(f"unknown rows: {', '.join(sorted(rows - set(ROWS)))}")
    if args.quick:
        args.rounds, args.seconds, args.size_mib, args.transfers = 7, 3, 64, 6
    size = args.size_mib * MiB
    block = os.urandom(MiB)
    if "throughput" in rows and len(BENCH_USERS) < 18:
        script = Path(__file__).resolve().parent.parent / "scripts" / "testbed" / "bench-users.sh"
        subprocess.run(["bash", str(script), "18"], check=True)
        sys.exit(subprocess.run([sys.executable, *sys.argv]).returncode)  # again, with them loaded
    if "throughput" in rows and len(BENCH_USERS) < 18:
        script = Path(__file__).resolve().parent.parent / "scripts" / "testbed" / "bench-users.sh"
        subprocess.run(["bash", str(script), "18"], check=True)
        sys.exit(subprocess.run([sys.executable, *sys.argv]).returncode)  # again, with them loaded
    users = [name for name in USERS if not USERS[name].get("locked")]
    work = f"/home/alice/hcc-bench-goals-{uuid.uuid4().hex}"
    local = f"/dev/shm/hcc-bench-goals-{uuid.uuid4().hex}.bin"
    if "jobs" in rows and history_count("alpha", "bob") < args.jobs:
        make_history("alpha", "bob", args.jobs)
    baseline_root = Path(args.baseline_root)
    if not (baseline_root / "hcc_federation").is_dir():
        parser.error(f"--baseline-root {baseline_root} is not a checkout of the service")
    head = subprocess.run(
        ["git", "-C", str(baseline_root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with (
        registry() as db_now,
        registry() as db_base,
        tempfile.TemporaryDirectory(dir="/tmp") as ctl,
        pserve(settings(db_now, ["alpha"], SETTINGS), threads=16, server_options=SERVER) as (p1, proc1),
        pserve(
            settings(db_base, ["alpha"], SETTINGS), threads=16, server_options=SERVER, root=baseline_root
        ) as (p2, proc2),
    ):
        control = {user: os.path.join(ctl, f"cm-{user}") for user in users}
        now, base = Server("now", p1, proc1), Server("before", p2, proc2)
        try:
            for user in users:
                ssh_run("alpha", user, ["true"], control[user])  # masters, outside the measurements
            ssh_run("alpha", "alice", ["mkdir", "-p", "--", work], control["alice"])
            print(f"baseline: {baseline_root} at {head}; load before: {' '.join(load_before)}\n")
            print("| measure | now | baseline | ratio | goal |\n|---|---|---|---|---|")
            cores: dict[str, tuple[float, int, float]] = {}

            if "ls" in rows:
                # 1. warm ls of a home directory
                home = files_url(path="/home/alice")
                for server in (now, base):
                    server.get(home)
                ls_now, ls_base, ls_cm = interleaved_ms(
                    [
                        lambda: now.get(home),
                        lambda: base.get(home),
                        lambda: ssh_run("alpha", "alice", ["ls", "-la", "/home/alice"], control["alice"]),
                    ],
                    args.rounds,
                )
                row(
                    "warm ls /home/alice, median",
                    f"{ls_now:.2f} ms",
                    f"CM `ls -la` {ls_cm:.2f} ms",
                    ls_now / ls_cm,
                    "<= 0.4",
                )
                row("  (before)", f"{ls_base:.2f} ms", f"CM `ls -la` {ls_cm:.2f} ms", ls_base / ls_cm, "")

            if "detail" in rows:
                # 2. partitions / cluster detail: "now" keeps each caller's answer for
                # hcc.cluster.alpha.detail_cache seconds (5 by default), so all but the first of these
                # polls are served from it; a third server of this checkout with the setting at 0
                # gives the uncached figure (one sinfo per request), in the same interleaved rounds
                detail = "/api/v1/clusters/alpha"
                uncached = {**SETTINGS, "hcc.cluster.alpha.detail_cache": "0"}
                with (
                    registry() as db_off,
                    pserve(settings(db_off, ["alpha"], uncached), threads=16, server_options=SERVER) as (
                        p3,
                        proc3,
                    ),
                ):
                    off = Server("now, detail_cache 0", p3, proc3)
                    for server in (now, base, off):
                        server.get(detail)
                    part_now, part_off, part_base, part_cm = interleaved_ms(
                        [
                            lambda: now.get(detail),
                            lambda: off.get(detail),
                            lambda: base.get(detail),
                            lambda: ssh_run(
                                "alpha", "alice", ["scontrol", "show", "partition"], control["alice"]
                            ),
                        ],
                        args.rounds,
                    )
                row(
                    f"cluster detail (partitions), median, answer kept (detail_cache {KEPT:g})",
                    f"{part_now:.2f} ms",
                    f"CM `scontrol show partition` {part_cm:.2f} ms",
                    part_now / part_cm,
                    "<= 0.5",
                )
                row("  (detail_cache 0: sinfo per request)", f"{part_off:.2f} ms", "", part_off / part_cm, "")
                row("  (before)", f"{part_base:.2f} ms", "", part_base / part_cm, "")

            if "jobs" in rows:
                # 3. job list of bob (>= args.jobs finished jobs)
                jobs = "/api/v1/clusters/alpha/jobs"
                for server in (now, base):
                    server.get(jobs, "bob")
                since = validate_since(None)
                cheapest = [
                    "sh",
                    "-c",
                    " && ".join(
                        [
                            shlex.join(sacct_list_argv("bob", since, new_delimiter())) + " >/dev/null",
                            shlex.join(squeue_argv("bob")) + " >/dev/null",
                        ]
                    ),
                ]
                jobs_now, jobs_base, jobs_cm = interleaved_ms(
                    [
                        lambda: now.get(jobs, "bob"),
                        lambda: base.get(jobs, "bob"),
                        lambda: ssh_run("alpha", "bob", cheapest, control["bob"]),
                    ],
                    args.rounds,
                )
                row(
                    f"job list ({args.jobs} jobs), median",
                    f"{jobs_now:.1f} ms",
                    f"CM sacct (ReqMem) + squeue {jobs_cm:.1f} ms",
                    jobs_now / jobs_cm,
                    "<= 1.1",
                )
                row("  (before)", f"{jobs_base:.1f} ms", "", jobs_base / jobs_cm, "")

            if "throughput" in rows:
                # 4. and 5. throughput, and the server's CPU per warm ls under 10 clients
                results = {}
                for clients in (10, 100):
                    for who in ("one user", f"{len(users)} users"):
                        chosen = ["alice"] if who == "one user" else users
                        for server in (now, base):
                            results[(clients, who, server.label)] = throughput(
                                server, clients, chosen, args.seconds
                            )
                cpu_now = results[(10, "one user", "now")][2]
                cpu_base = results[(10, "one user", "before")][2]
                row(
                    "server CPU per warm ls, 10 clients",
                    f"{cpu_now:.2f} ms",
                    f"before {cpu_base:.2f} ms",
                    cpu_now / cpu_base,
                    "<= 3 ms",
                )
                for (clients, who, label), (rate, errors, _) in results.items():
                    if label != "now":
                        continue
                    before, before_errors, _ = results[(clients, who, "before")]
                    row(
                        f"ls throughput, {clients} clients, {who}",
                        f"{rate:.0f} req/s ({errors} errors)",
                        f"before {before:.0f} req/s ({before_errors} errors)",
                        rate / before,
                        ">= 2, 0 errors",
                    )

            if "whole" in rows:
                # 6. a whole listing of args.entries entries
                many = f"{work}/many"
                script = (
                    "import os, sys\nos.mkdir(sys.argv[1])\nfor i in range(int(sys.argv[2])):\n"
                    "    open(os.path.join(sys.argv[1], 'f%05d' % i), 'w').close()\n"
                )
                ssh_run(
                    "alpha", "alice", ["python3", "-c", script, many, str(args.entries)], control["alice"]
                )

                def all_pages(server: Server) -> bytes:
                    return b"".join(
                        server.get(files_url(path=many, offset=offset, limit=1000))
                        for offset in range(0, args.entries, 1000)
                    )

                def one_answer(server: Server) -> bytes:
                    return server.get(files_url(path=many, all="true"))

                # what the answers hold is checked once, outside the timings (the client's parsing
                # is not the service's time, as ls's output is not parsed either)
                pages = [json.loads(now.get(files_url(path=many, offset=o, limit=1000))) for o in (0, 1000)]
                whole = json.loads(one_answer(now))
                assert pages[0]["total"] == whole["total"] == len(whole["entries"]) == args.entries
                assert whole["entries"][:2000] == pages[0]["entries"] + pages[1]["entries"]
                all_pages(base)
                pages_rounds = max(3, args.rounds // 3)
                whole_now, whole_one, whole_base, ls_l = interleaved_ms(
                    [
                        lambda: all_pages(now),
                        lambda: one_answer(now),
                        lambda: all_pages(base),
                        lambda: ssh_run("alpha", "alice", ["ls", "-l", "--", many], control["alice"]),
                    ],
                    pages_rounds,
                )
                row(
                    f"whole {args.entries}-entry listing (one answer, all=true)",
                    f"{whole_one:.0f} ms",
                    f"CM `ls -l` {ls_l:.0f} ms",
                    whole_one / ls_l,
                    "<= 1.5",
                )
                row(
                    f"whole {args.entries}-entry listing (pages of 1,000)",
                    f"{whole_now:.0f} ms",
                    f"CM `ls -l` {ls_l:.0f} ms",
                    whole_now / ls_l,
                    "<= 1.5",
                )
                row("  (before)", f"{whole_base:.0f} ms", "", whole_base / ls_l, "")

            if "upload" in rows:
                # 7. upload against scp: through Apache mod_wsgi (this checkout and the baseline, each in
                # an Apache of its own from the bed's template) and through waitress, in turns
                with open(local, "wb") as handle:
                    for _ in range(size // MiB):
                        handle.write(block)
                with (
                    mysql_registry() as url_now,
                    mysql_registry() as url_base,
                    apache(hosted_settings(url_now), root=Path(__file__).resolve().parent.parent) as (
                        a1,
                        ap1,
                    ),
                    apache(hosted_settings(url_base), root=baseline_root) as (a2, ap2),
                ):
                    wsgi_now = Server("now (mod_wsgi)", a1, ap1, tls=True)
                    wsgi_base = Server("before (mod_wsgi)", a2, ap2, tls=True)
                    rates = {"apache": [], "apache before": [], "waitress": [], "scp": []}
                    failures = []
                    kinds = (("apache", wsgi_now), ("apache before", wsgi_base), ("waitress", now))
                    for _ in range(args.upload_rounds):
                        for key, server in kinds:
                            try:
                                rates[key].append(upload(server, f"{work}/up.bin", size, block))
                            except OSError as exc:  # said below the table, never hidden
                                failures.append(f"{key}: {exc!r}")
                                server.client = Client(
                                    server.port, timeout=600, blocksize=MiB, tls=server.tls
                                )
                        rates["scp"].append(scp_rate(control["alice"], local, f"{work}/scp.bin", size))
                    up = {k: statistics.median(v) if v else float("nan") for k, v in rates.items()}
                    row(
                        f"{args.size_mib} MiB upload, Apache mod_wsgi, median of {args.upload_rounds}",
                        f"{up['apache']:.0f} MiB/s",
                        f"scp {up['scp']:.0f} MiB/s",
                        up["apache"] / up["scp"],
                        ">= 1.0",
                    )
                    row(
                        "  (before, mod_wsgi)",
                        f"{up['apache before']:.0f} MiB/s",
                        "",
                        up["apache before"] / up["scp"],
                        "",
                    )
                    row("  (waitress)", f"{up['waitress']:.0f} MiB/s", "", up["waitress"] / up["scp"], "")
                    print(f"|  (every run, MiB/s) | {fmt_runs(rates)} | | | |", flush=True)
                    for failure in failures:
                        print(f"|  upload failed | {failure} | | | |", flush=True)

            if "cores" in rows:
                # 7b. all cores: one process against several, in the same run (this checkout under
                # Apache mod_wsgi with processes=1 and processes=2; the bed's HAProxy over its two
                # replicas against one replica, which serve the installed copy)
                with mysql_registry() as url_cores:
                    for processes in (1, 2):
                        with apache(
                            hosted_settings(url_cores),
                            processes=processes,
                            threads=16 // processes,
                            root=Path(__file__).resolve().parent.parent,
                        ) as (port, process):
                            server = Server(f"mod_wsgi x{processes}", port, process, tls=True)
                            cores[f"mod_wsgi processes={processes} threads={16 // processes}"] = throughput(
                                server, 10, users, args.seconds
                            )
                for label, url in balancer_urls():
                    port = int(urllib.parse.urlsplit(url).port)
                    cores[label] = throughput(Server(label, port, None), 10, users, args.seconds)
                one = cores.get("mod_wsgi processes=1 threads=16")
                for label, (rate, errors, cpu) in cores.items():
                    base_rate = (
                        one[0] if one and "mod_wsgi" in label else cores.get("one replica", (None,))[0]
                    )
                    row(
                        f"all cores: ls/s, 10 clients, {len(users)} users, {label}",
                        f"{rate:.0f} req/s ({errors} errors)"
                        + (f", {cpu:.2f} ms CPU/req" if cpu == cpu else ""),
                        "",
                        rate / base_rate if base_rate else None,
                        "> 1 (x one process)",
                    )

            if "rss" in rows:
                # 8. RSS after many large downloads
                if "upload" not in rows:  # the file the uploads would have left
                    ssh_run(
                        "alpha",
                        "alice",
                        ["sh", "-c", 'head -c "$1" /dev/urandom > "$2"', "sh", str(size), f"{work}/up.bin"],
                        control["alice"],
                    )
                # each download from this checkout, then one from the baseline, in turns
                rss: dict[str, list[float]] = {"now": [], "before": []}
                start = {s.label: vm_kib(s.process.pid, "VmRSS")[0] / 1024 for s in (now, base)}
                for _ in range(args.transfers):
                    for server in (now, base):
                        download(server, f"{work}/up.bin", size)
                        rss[server.label].append(vm_kib(server.process.pid, "VmRSS")[0] / 1024)

                def rss_figures(label: str) -> tuple[str, str]:
                    after = rss[label]
                    early = after[min(2, len(after) - 1)]
                    return (
                        f"{after[-1]:.0f} MiB",
                        f"before them: {start[label]:.0f} MiB; after 3: {early:.0f} MiB",
                    )

                final, detail = rss_figures("now")
                row(
                    f"RSS after {args.transfers} x {args.size_mib} MiB downloads",
                    final,
                    detail,
                    None,
                    "<= 150 MB, flat",
                )
                final, detail = rss_figures("before")
                row("  (before)", final, detail, None, "")
                print(f"|  (after each, MiB) | {fmt_runs(rss)} | | | |", flush=True)
        finally:
            ssh_run("alpha", "alice", ["rm", "-r", "-f", "--", work], control["alice"])
            for user in users:
                close_master("alpha", user, control[user])
            if os.path.exists(local):
                os.remove(local)
    print(f"\nload after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
