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
import http.client
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hcc_federation.clusters import SINFO_ARGV  # noqa: E402

ENDPOINTS = json.loads(Path("/var/lib/hcc-testbed/endpoints.json").read_text())
USERS = {u["name"]: u for u in ENDPOINTS["users"]}
ALPHA = ENDPOINTS["clusters"]["alpha"]


def settings(db_path: str) -> dict:
    ldap = ENDPOINTS["ldap"]
    out = {
        "hcc.database.url": f"sqlite:///{db_path}",
        "hcc.auth.secret": "bench-secret-" + "x" * 40,
        # the benchmark logs in many times from one address
        "hcc.auth.throttle_max_per_address": "100000",
        "hcc.ldap.uri": ldap["uri"],
        "hcc.ldap.bind_dn": ldap["bind_dn"],
        "hcc.ldap.bind_password": ldap["bind_password"],
        "hcc.ldap.user_base": ldap["people"],
        "hcc.ldap.group_base": ldap["base"],
        "hcc.clusters": "alpha beta",
        "hcc.ssh.ca_key": ENDPOINTS["ssh_user_ca"]["private_key"],
    }
    for name, mode in (("alpha", "password"), ("beta", "certificate")):
        c = ENDPOINTS["clusters"][name]
        out.update(
            {
                f"hcc.cluster.{name}.host": c["ssh_host"],
                f"hcc.cluster.{name}.port": str(c["ssh_port"]),
                f"hcc.cluster.{name}.known_hosts": c["known_hosts"],
                f"hcc.cluster.{name}.identity": mode,
            }
        )
    return out


def migrate(db_path: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "development.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["hcc_database_url"] = f"sqlite:///{db_path}"
    command.upgrade(cfg, "head")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One keep-alive HTTP connection, as a portal would hold."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(
        self, method: str, path: str, body: dict | None = None, token: str | None = None
    ) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def login(self, name: str) -> str:
        status, body = self.call(
            "POST", "/api/v1/sessions", {"username": name, "password": USERS[name]["password"]}
        )
        assert status == 201, body
        return json.loads(body)["token"]


def timed(fn, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def ssh_base(control: str | None) -> list[str]:
    argv = [
        "ssh",
        "-i",
        USERS["alice"]["key"],
        "-p",
        str(ALPHA["ssh_port"]),
        "-o",
        f"UserKnownHostsFile={ALPHA['known_hosts']}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
    ]
    if control:
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}", "-o", "ControlPersist=120"]
    return [*argv, f"alice@{ALPHA['ssh_host']}"]


def openssh(control: str | None, rounds: int) -> list[float]:
    command = shlex.join(SINFO_ARGV)

    def once():
        subprocess.run([*ssh_base(control), command], check=True, capture_output=True)

    if control:
        once()  # the master connection is made once, outside the measurement
    samples = timed(once, rounds)
    if control:
        subprocess.run([*ssh_base(control)[:-1], "-O", "exit", ssh_base(control)[-1]], capture_output=True)
    return samples


def in_process(rounds: int, db_path: str) -> tuple[list[float], list[float]]:
    """Cold and warm latency over HTTP against a waitress server of the app in this process."""
    import waitress

    from hcc_federation import main

    app = main({}, **settings(db_path))
    port = free_port()
    server = waitress.create_server(app, host="127.0.0.1", port=port, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
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
    server.close()
    return cold_samples, warm_samples


def concurrent(db_path: str, clients: int, requests_each: int) -> tuple[float, int]:
    """Requests per second of `clients` concurrent clients against a pserve process; its peak RSS."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        ini = Path(tmp) / "bench.ini"
        lines = ["[app:main]", "use = egg:hcc-federation"]
        lines += [f"{k} = {v}" for k, v in settings(db_path).items()]
        lines += [
            "",
            "[server:main]",
            "use = egg:waitress#main",
            f"listen = 127.0.0.1:{port}",
            "threads = 16",
        ]
        ini.write_text("\n".join(lines) + "\n")
        server = subprocess.Popen(
            [str(ROOT / ".venv/bin/pserve"), str(ini)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
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
            status = Path(f"/proc/{server.pid}/status").read_text()
            hwm_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
            if errors:
                print(f"  errors during the concurrent run: {errors[:5]} ({len(errors)})")
            return clients * requests_each / elapsed, hwm_kib
        finally:
            server.terminate()
            server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=25, help="requests per client in the concurrent run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db_path = os.path.join(tmp, "bench.sqlite")
        migrate(db_path)
        cold, warm = in_process(args.rounds, db_path)
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
