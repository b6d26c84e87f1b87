"""Benchmark of notebook starts: POST to `running` in each mode, next to the same start by hand over OpenSSH.

Prints, in one run, for alice on one cluster (default alpha) with the bed's real Jupyter server:
- login mode: the seconds from POST /api/v1/clusters/<cluster>/notebooks to a GET that says `running`
  (polled every 0.25 s), against `nohup jupyter-server ... &` over one OpenSSH ControlMaster
  connection and polling its /api/status with the token until it answers;
- batch mode: the same through the service, against `sbatch --wrap` of the same server over OpenSSH,
  polling the same way.
The service's start includes what the hand start leaves out: a TLS certificate made and written over
SFTP, the port claimed in the registry, and the readiness check through a direct-tcpip channel.

Run as root with the test bed up:  .venv/bin/python bench/bench_notebooks.py [--cluster alpha] [--runs 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import shlex
import statistics
import subprocess
import tempfile
import time

from common import ENDPOINTS, Client, close_master, in_process, registry, settings, ssh_argv

JUPYTER = ENDPOINTS["jupyter"]["jupyter"] + "-server"
POLL = 0.25


def service_start(client: Client, token: str, cluster: str, mode: str) -> float:
    started = time.monotonic()
    status, body = client.call(
        "POST", f"/api/v1/clusters/{cluster}/notebooks", {"mode": mode, "hours": 1}, token
    )
    assert status == 201, body
    nb = json.loads(body)
    try:
        while True:
            status, body = client.call("GET", f"/api/v1/clusters/{cluster}/notebooks/{nb['id']}", token=token)
            state = json.loads(body)["state"]
            if state == "running":
                return time.monotonic() - started
            assert state in ("pending", "starting"), body
            time.sleep(POLL)
    finally:
        client.call("DELETE", f"/api/v1/clusters/{cluster}/notebooks/{nb['id']}", token=token)


def answers(port: int, token: str) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/api/status", headers={"Authorization": f"token {token}"})
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def by_hand(cluster: str, mode: str, port: int, control: str) -> float:
    token = secrets.token_hex(16)
    server = [
        JUPYTER,
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.open_browser=False",
    ]
    # the token in the environment, as the service passes it (not on argv)
    command = f"export JUPYTER_TOKEN={token}; cd; "
    if mode == "login":
        command += f"nohup setsid {shlex.join(server)} >/dev/null 2>&1 </dev/null & echo $!"
    else:
        command += shlex.join(
            ["sbatch", "--parsable", "--time=60", "--output=/dev/null", "--wrap", shlex.join(server)]
        )
    started = time.monotonic()
    handle = subprocess.run(
        [*ssh_argv(cluster, "alice", control), command], capture_output=True, text=True, check=True
    )
    ident = handle.stdout.strip()
    try:
        while not answers(port, token):
            time.sleep(POLL)
        return time.monotonic() - started
    finally:
        stop = f"kill -TERM -- -{ident}" if mode == "login" else f"scancel {ident}"
        subprocess.run([*ssh_argv(cluster, "alice", control), stop], capture_output=True)
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", default="alpha")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    low, high = ENDPOINTS["jupyter"]["port_range"]
    overrides = {
        f"hcc.cluster.{args.cluster}.notebook_modes": "login batch",
        f"hcc.cluster.{args.cluster}.notebook_command": JUPYTER,
        f"hcc.cluster.{args.cluster}.notebook_ports": f"{low}-{high - 10}",
    }
    with registry() as db_path, in_process(settings(db_path, (args.cluster,), overrides)) as (_app, port):
        client = Client(port)
        token = client.login("alice")
        control = f"{tempfile.mkdtemp(prefix='bench-nb-')}/control"
        try:
            print(f"notebook start to running on {args.cluster}, median of {args.runs} (seconds)")
            for mode in ("login", "batch"):
                service = [service_start(client, token, args.cluster, mode) for _ in range(args.runs)]
                hand = [by_hand(args.cluster, mode, high - i, control) for i in range(args.runs)]
                ratio = statistics.median(service) / statistics.median(hand)
                print(
                    f"  {mode:5}  service {statistics.median(service):6.2f}  "
                    f"OpenSSH by hand {statistics.median(hand):6.2f}  ratio {ratio:4.2f}  "
                    f"(service runs {', '.join(f'{s:.2f}' for s in service)}; "
                    f"hand {', '.join(f'{s:.2f}' for s in hand)})"
                )
        finally:
            close_master(args.cluster, "alice", control)


if __name__ == "__main__":
    main()
