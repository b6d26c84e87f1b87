"""What the benchmarks share: the test bed's endpoints, the service's settings for it, a migrated
SQLite registry, the service served by waitress (in this process or as a `pserve` process), a
keep-alive HTTP client, and OpenSSH argv for the same users and clusters.

The scripts import this as a plain top-level module (`from common import ...`): they run as
`.venv/bin/python bench/<script>.py`, and Python puts the script's own directory (bench/) first on
sys.path, so no package or path trick is needed there. This module puts the repository root on
sys.path in turn, so that `hcc_federation` imports from the checkout even where it is not installed.
"""

from __future__ import annotations

import configparser
import contextlib
import http.client
import json
import os
import secrets
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# The venv that runs the script also runs `pserve`: a git worktree has no .venv of its own, and the
# shared venv's editable install points at another checkout, so pserve gets PYTHONPATH=ROOT too.
VENV_BIN = Path(sys.executable).parent

ENDPOINTS = json.loads(Path("/var/lib/hcc-testbed/endpoints.json").read_text())
USERS = {u["name"]: u for u in ENDPOINTS["users"]}
# The extra people scripts/testbed/bench-users.sh adds for benchmarks that need many (issue 14's
# throughput goal names 20 users); absent unless that script ran.
_BENCH_USERS = Path("/var/lib/hcc-testbed/bench-users.json")
BENCH_USERS = json.loads(_BENCH_USERS.read_text()) if _BENCH_USERS.exists() else []
USERS.update({u["name"]: u for u in BENCH_USERS})
# How the service reaches each cluster as the caller: alpha with the caller's password, beta with a
# short-lived certificate signed by the bed's user CA; both ways are benchmarked.
IDENTITIES = {"alpha": "password", "beta": "certificate"}


def settings(
    db_path: str, clusters: Sequence[str] = ("alpha", "beta"), overrides: dict[str, str] | None = None
) -> dict[str, str]:
    """The service's hcc.* settings for the test bed, a SQLite registry at ``db_path`` and ``clusters``;
    ``overrides`` added last (they may replace any key)."""
    ldap = ENDPOINTS["ldap"]
    out = {
        "hcc.database.url": f"sqlite:///{db_path}",
        "hcc.auth.secret": "bench-secret-" + "x" * 40,
        "hcc.ldap.uri": ldap["uri"],
        "hcc.ldap.bind_dn": ldap["bind_dn"],
        "hcc.ldap.bind_password": ldap["bind_password"],
        "hcc.ldap.user_base": ldap["people"],
        "hcc.ldap.group_base": ldap["base"],
        "hcc.clusters": " ".join(clusters),
    }
    if any(IDENTITIES[name] == "certificate" for name in clusters):
        out["hcc.ssh.ca_key"] = ENDPOINTS["ssh_user_ca"]["private_key"]
    for name in clusters:
        c = ENDPOINTS["clusters"][name]
        out.update(
            {
                f"hcc.cluster.{name}.host": c["ssh_host"],
                f"hcc.cluster.{name}.port": str(c["ssh_port"]),
                f"hcc.cluster.{name}.known_hosts": c["known_hosts"],
                f"hcc.cluster.{name}.identity": IDENTITIES[name],
            }
        )
    out.update(overrides or {})
    return out


def migrate(db_path: str) -> None:
    """Create the registry's tables in a SQLite file (alembic upgrade head, as a deployment does)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "development.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["hcc_database_url"] = f"sqlite:///{db_path}"
    command.upgrade(cfg, "head")


@contextlib.contextmanager
def registry() -> Iterator[str]:
    """The path of a migrated SQLite registry in a temp dir, removed on the way out."""
    with tempfile.TemporaryDirectory() as tmp:
        db_path = str(Path(tmp) / "bench.sqlite")
        migrate(db_path)
        yield db_path


@contextlib.contextmanager
def mysql_registry() -> Iterator[str]:
    """The URL of a fresh, migrated MariaDB registry on the bed (a `hccfed_bench_*` database, which the
    bed's user may create), as production runs it; dropped on the way out. Pass it to ``settings`` as
    the ``hcc.database.url`` override."""
    import MySQLdb
    from alembic import command
    from alembic.config import Config

    m = ENDPOINTS["mysql"]
    name = f"{m['database']}_bench_{secrets.token_hex(4)}"
    conn = MySQLdb.connect(host=m["host"], port=m["port"], user=m["user"], password=m["password"])
    conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    url = f"mysql+mysqldb://{m['user']}:{m['password']}@{m['host']}:{m['port']}/{name}?charset=utf8mb4"
    try:
        cfg = Config(str(ROOT / "development.ini"))
        cfg.set_main_option("script_location", str(ROOT / "alembic"))
        cfg.attributes["hcc_database_url"] = url
        command.upgrade(cfg, "head")
        yield url
    finally:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = 30) -> None:
    """Wait until something accepts connections on the loopback ``port`` (and ``process`` lives)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the server exited with status {process.returncode}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def in_process(app_settings: dict[str, str], threads: int = 4) -> Iterator[tuple[object, int]]:
    """The app served by waitress on a free loopback port in a thread of this process: (app, port)."""
    import waitress

    from hcc_federation import main

    app = main({}, **app_settings)
    port = free_port()
    server = waitress.create_server(app, host="127.0.0.1", port=port, threads=threads)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        yield app, port
    finally:
        server.close()


def deployed_server_options(**overrides: str) -> dict[str, str]:
    """waitress's options from production.ini's [server:main] (not where it listens, nor its thread
    count, which ``pserve`` takes): a bench server buffers output as a deployed one does. Without
    this one bench ran with waitress's 16 MiB ``outbuf_high_watermark``, and each keep-alive
    connection that had served a download kept up to 16 MiB of it (waitress never prunes an output
    buffer that stays under ``outbuf_overflow``, so it grows to the watermark however fast the
    client reads)."""
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "production.ini")
    skipped = {"use", "listen", "threads"}
    options = {k: v for k, v in ini["server:main"].items() if k not in skipped}
    return {**options, **overrides}


def stop_process(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM, ``grace`` seconds to exit, then SIGKILL."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@contextlib.contextmanager
def pserve(
    app_settings: dict[str, str],
    threads: int,
    server_options: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    root: Path = ROOT,
) -> Iterator[tuple[int, subprocess.Popen]]:
    """A `pserve` process of the service (waitress, ``threads`` threads, ``server_options`` added to its
    [server:main]) on a free loopback port, from an ini in a temp dir: (port, process) once it accepts
    connections; ``env`` is added to its environment (e.g. MALLOC_ARENA_MAX); ``root``: the checkout
    whose code it serves (another one gives a baseline in the same run). The process is stopped on
    the way out, whatever happened."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        ini = Path(tmp) / "bench.ini"
        lines = ["[app:main]", "use = egg:hcc-federation"]
        lines += [f"{k} = {v}" for k, v in app_settings.items()]
        lines += ["", "[server:main]", "use = egg:waitress#main", f"listen = 127.0.0.1:{port}"]
        lines += [f"threads = {threads}"]
        lines += [f"{k} = {v}" for k, v in (server_options or {}).items()]
        # it holds the registry's password: with a MariaDB registry the service refuses an ini that
        # other users can read (hcc_federation/deployment.py)
        ini.touch(mode=0o600)
        ini.write_text("\n".join(lines) + "\n")
        environ = {**os.environ, "PYTHONPATH": str(root), **(env or {})}
        # BENCH_SERVER_LOG=FILE keeps the server's output (its log) for a look after the run
        log_path = os.environ.get("BENCH_SERVER_LOG")
        output = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        process = subprocess.Popen(
            [str(VENV_BIN / "pserve"), str(ini)], stdout=output, stderr=output, env=environ
        )
        try:
            wait_for_port(port, process)
            yield port, process
        finally:
            stop_process(process, grace=10)
            if log_path:
                output.close()


HOSTING_PATH = Path(ENDPOINTS["state_dir"]) / "hosting.json"


@contextlib.contextmanager
def apache(
    app_settings: dict[str, str],
    processes: int = 1,
    threads: int = 16,
    root: Path = ROOT,
    script: str | None = None,
) -> Iterator[tuple[int, subprocess.Popen]]:
    """An Apache mod_wsgi of its own serving the checkout ``root``, as the test bed hosts the service:
    the bed's template (scripts/testbed/templates/apache2.conf of this checkout), its TLS certificate,
    its service user and venv (hosting.json), daemon mode with ``processes`` x ``threads``, on a free
    loopback port, with its own run and log directories in a temp dir: (port, the Apache process)
    once it answers. The bed's own Apache (serving the installed copy) is not touched. ``root`` comes
    first on the daemon's sys.path, so it serves this checkout's code with the venv's packages. The
    settings need a registry the service user can reach (``mysql_registry()``) and files it can read.
    ``script``: the source of another WSGI script to serve in the same Apache instead of the service
    (it must answer ``GET /api/v1/health`` with 200), e.g. an app that only reads request bodies."""
    hosting = json.loads(HOSTING_PATH.read_text())
    port = free_port()
    state = ENDPOINTS["state_dir"]
    with tempfile.TemporaryDirectory(prefix="hcc-bench-apache-") as tmp:
        base = Path(tmp)
        os.chmod(base, 0o755)  # noqa: S103 - Apache's workers (www-data) and the daemon (the service user) enter it
        run, log = base / "run", base / "log"
        for d in (run, run / "apache2", log):
            d.mkdir()
        ini = base / "service.ini"
        lines = ["[app:main]", "use = egg:hcc-federation"] + [f"{k} = {v}" for k, v in app_settings.items()]
        ini.write_text("\n".join(lines) + "\n")
        shutil.chown(ini, hosting["user"], hosting["user"])
        os.chmod(ini, 0o600)
        wsgi_file = base / "bench.wsgi"
        wsgi_file.write_text(
            f"import os, sys\nsys.path.insert(0, {str(root)!r})\nos.environ['HCC_INI'] = {str(ini)!r}\n"
            "from hcc_federation.wsgi import application  # noqa: E402,F401\n"
            if script is None
            else script
        )
        template = (ROOT / "scripts/testbed/templates/apache2.conf").read_text()
        values = {
            "S": state,
            "RUN": str(run),
            "LOG": str(log),
            "APACHE_PORT": str(port),
            "SERVICE_USER": hosting["user"],
            "SERVICE_VENV": hosting["venv"],
            "WSGI_SCRIPT": str(wsgi_file),
        }
        for key, value in values.items():
            template = template.replace(f"@{key}@", value)
        template = template.replace(" processes=1 threads=16 ", f" processes={processes} threads={threads} ")
        assert f"processes={processes} threads={threads}" in template, "the template's daemon line changed"
        grant = "  <Files bench.wsgi>\n    Require all granted\n  </Files>\n"
        template += f"<Directory {base}>\n{grant}</Directory>\n"
        conf = base / "apache2.conf"
        conf.write_text(template)
        process = subprocess.Popen(
            ["/usr/sbin/apache2", "-f", str(conf), "-DFOREGROUND"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            client = Client(port, tls=True)
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.call("GET", "/api/v1/health")[0] == 200:
                        break
                except OSError:
                    client = Client(port, tls=True)
                if process.poll() is not None or time.monotonic() > deadline:
                    error_log = (log / "apache2-error.log").read_text()[-2000:]
                    raise RuntimeError(f"Apache did not come up: {error_log}")
                time.sleep(0.2)
            yield port, process
        finally:
            # SIGTERM: Apache stops its workers and the WSGI daemon processes, then exits
            stop_process(process, grace=20)
            if os.environ.get("BENCH_SERVER_LOG"):
                with open(os.environ["BENCH_SERVER_LOG"], "a") as out:
                    out.write((log / "apache2-error.log").read_text())


def children_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of the processes whose parent is ``pid`` (mod_wsgi's daemons)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                total += sum(int(t) for t in stat[11:13]) / os.sysconf("SC_CLK_TCK")
    return total


def vm_kib(pid: int, *keys: str) -> tuple[int, ...]:
    """Fields of /proc/<pid>/status in KiB (e.g. "VmRSS", "VmHWM"), in the order asked."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            fields[key] = int(value.split()[0])
    return tuple(fields[key] for key in keys)


def proc_figures(pid: int) -> dict[str, float]:
    """What a soak watches in a process: VmRSS and VmHWM in MiB, threads, open file descriptors, and
    the CPU seconds it has used (user + system)."""
    rss, hwm, threads = vm_kib(pid, "VmRSS", "VmHWM", "Threads")
    # /proc/<pid>/stat: fields 14 and 15 (utime, stime) in clock ticks, after the ")" of the name
    ticks = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[11:13]
    return {
        "rss_mib": rss / 1024,
        "hwm_mib": hwm / 1024,
        "threads": threads,
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "cpu_s": sum(int(t) for t in ticks) / os.sysconf("SC_CLK_TCK"),
    }


class PatternBody:
    """``size`` bytes of a repeated random block, read like a file: no gigabyte on disk or in memory."""

    def __init__(self, size: int, block: bytes):
        self.remaining = size
        self.block = block

    def read(self, n: int = -1) -> bytes:
        n = self.remaining if n < 0 else min(n, self.remaining)
        out = (self.block * (n // len(self.block) + 1))[:n]
        self.remaining -= n
        return out


class Client:
    """One keep-alive HTTP connection, as a portal would hold."""

    def __init__(self, port: int, timeout: float = 60, blocksize: int = 8192, tls: bool = False):
        if tls:  # the bed's Apache: HTTPS with the bed's certificate (hosting.json's tls_ca)
            context = ssl.create_default_context(cafile=json.loads(HOSTING_PATH.read_text())["tls_ca"])
            self.conn = http.client.HTTPSConnection(
                "127.0.0.1", port, timeout=timeout, blocksize=blocksize, context=context
            )
        else:
            self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, blocksize=blocksize)

    @staticmethod
    def auth(token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """(status, body). A dict or list ``body`` is sent as JSON; bytes or a file-like object
        (anything with ``read``) as they are, with the caller's ``headers``."""
        sent = {"Content-Type": "application/json"} if isinstance(body, dict | list) else {}
        if sent:
            body = json.dumps(body)
        self.conn.request(method, path, body=body, headers={**sent, **self.auth(token), **(headers or {})})
        response = self.conn.getresponse()
        return response.status, response.read()

    def login(self, name: str) -> str:
        """A session token of the test user ``name`` (POST /api/v1/sessions with the bed's password)."""
        status, body = self.call(
            "POST", "/api/v1/sessions", {"username": name, "password": USERS[name]["password"]}
        )
        assert status == 201, body
        return json.loads(body)["token"]


def ssh_options(cluster: str, user: str, control: str | None = None) -> list[str]:
    """OpenSSH options for ssh, sftp and scp alike (the port is not one: ssh spells it -p, the others
    -P): the user's key, the cluster's known_hosts checked strictly, never a prompt; with ``control``, a
    ControlMaster socket at that path, made by the first call and kept for 300 s after the last."""
    argv = [
        "-i",
        USERS[user]["key"],
        "-o",
        f"UserKnownHostsFile={ENDPOINTS['clusters'][cluster]['known_hosts']}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
    ]
    if control:
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}", "-o", "ControlPersist=300"]
    return argv


def destination(cluster: str, user: str) -> str:
    return f"{user}@{ENDPOINTS['clusters'][cluster]['ssh_host']}"


def ssh_argv(cluster: str, user: str, control: str | None = None) -> list[str]:
    """`ssh` to ``cluster`` as ``user``, ending with the destination: append the remote command (one
    string, e.g. ``shlex.join(argv)``). Without ``control``, a new connection per call."""
    port = str(ENDPOINTS["clusters"][cluster]["ssh_port"])
    return ["ssh", *ssh_options(cluster, user, control), "-p", port, destination(cluster, user)]


def ssh_run(cluster: str, user: str, argv: Sequence[str], control: str | None = None) -> bytes:
    """Run ``argv`` on ``cluster`` as ``user`` through OpenSSH: its stdout (CalledProcessError on failure)."""
    done = subprocess.run(
        [*ssh_argv(cluster, user, control), shlex.join(argv)], check=True, capture_output=True
    )
    return done.stdout


def close_master(cluster: str, user: str, control: str) -> None:
    """Ask the ControlMaster at ``control`` to exit (nothing happens if there is none)."""
    argv = ssh_argv(cluster, user, control)
    subprocess.run([*argv[:-1], "-O", "exit", argv[-1]], capture_output=True)
