"""Pieces that several test modules share, imported where they are needed (the session-wide fixtures
stay in conftest.py). Nothing here touches the test bed at import, so unit tests may use it too."""

import configparser
import contextlib
import os
import re
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

from jsonschema import Draft202012Validator
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.validation.response.exceptions import MissingData, ResponseValidationError
from webtest import TestApp, TestRequest

# A name cannot hold "/", so these reach /tmp/pwned through cd: "cd" alone goes home (/home/alice).
PWN = "cd;cd ..;cd ..;cd tmp;touch pwned"
HOSTILE_NAMES = [
    f"$({PWN})",
    f"`{PWN}`",
    f"a;{PWN};b",
    f"a' && {PWN} && '",
    f'a" && {PWN} && "',
    "-rf",
    "--help",
    "new\nline",
    "quo'te\"s",
    "sp ace  ",
    "ünïcødé ☃ 名前",
    "x" * 255,
    "é" * 127,  # 254 bytes of UTF-8
    "*?[a]{b}~",
]

# The fewest raw settings that parse_settings accepts: every required key, with a valid value.
BASE_SETTINGS = {
    "hcc.database.url": "sqlite:///x.sqlite",
    "hcc.auth.secret": "s" * 32,
    "hcc.ldap.uri": "ldap://127.0.0.1:3890",
    "hcc.ldap.user_base": "ou=People,dc=example,dc=org",
    "hcc.ldap.group_base": "dc=example,dc=org",
}


def wait_for(check, timeout=60.0, interval=0.5):
    """The first truthy value of ``check()``, polled every ``interval`` s; AssertionError past ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {check.__name__}")
        time.sleep(interval)


@contextlib.contextmanager
def alice_work_dir(users: dict, prefix: str) -> Iterator[Path]:
    """A fresh directory of alice's in her home (``prefix`` + a random suffix), removed afterwards."""
    path = Path(f"/home/alice/{prefix}-{uuid.uuid4().hex[:10]}")
    path.mkdir()
    os.chown(path, users["alice"]["uid"], -1)
    try:
        yield path
    finally:
        # job output files belong to alice; the test's directory goes with them
        subprocess.run(["rm", "-rf", "--", str(path)], check=True)


@contextlib.contextmanager
def jobs_cancelled_afterwards(clusters: dict) -> Iterator[list[tuple[str, str]]]:
    """A list of (cluster, job id) to fill: each is scancelled as root (whoever owns it) on the way
    out, whatever the test's outcome."""
    jobs: list[tuple[str, str]] = []
    try:
        yield jobs
    finally:
        for cluster, job_id in jobs:
            env = {**os.environ, "SLURM_CONF": clusters[cluster]["slurm_conf"]}
            subprocess.run(["scancel", job_id], env=env, capture_output=True, timeout=30)


def ini_server_options(ini: Path) -> dict[str, str]:
    """The waitress adjustments of an ini's [server:main], without where it listens."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ini)
    return {k: v for k, v in parser["server:main"].items() if k not in ("use", "listen")}


@contextlib.contextmanager
def live_server(app, **adjustments) -> Iterator[str]:
    """``app`` under a real waitress on a free loopback port, in a thread: yields its base URL.

    WebTest's StopableWSGIServer stops its loop from inside the loop's thread: closing waitress's
    sockets from the test's thread raced the loop's select() (EBADF in the server thread, seen once
    in a full run).
    """
    from webtest.http import StopableWSGIServer

    server = StopableWSGIServer.create(app, host="127.0.0.1", port=0, **adjustments)
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.shutdown()


# --------------------------------------------------------------------------------------------
# The service under test, built the way the functional tests build it (nothing runs at import).

ROOT = Path(__file__).resolve().parent.parent


def migrate(url: str) -> None:
    """Create the schema the only way production does: alembic's migrations."""
    from alembic.config import Config

    cfg = Config(str(ROOT / "development.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["hcc_database_url"] = url
    from alembic import command

    command.upgrade(cfg, "head")


def cluster_settings(endpoints: dict, modes: dict[str, str]) -> dict:
    """hcc.cluster.* settings for the bed's clusters with the given identity modes."""
    out = {"hcc.clusters": " ".join(modes), "hcc.ssh.ca_key": endpoints["ssh_user_ca"]["private_key"]}
    for name, mode in modes.items():
        c = endpoints["clusters"][name]
        prefix = f"hcc.cluster.{name}."
        out.update(
            {
                prefix + "host": c["ssh_host"],
                prefix + "port": str(c["ssh_port"]),
                prefix + "known_hosts": c["known_hosts"],
                prefix + "identity": mode,
                prefix + "description": f"test bed cluster {name}",
                prefix + "command_timeout": "20",
                prefix + "filesystems": "HOME=$HOME SCRATCH=/tmp/$USER",
            }
        )
    return out


def _legacy_tail_pattern():
    from hcc_federation.legacy.views import PATH_TAIL_ROUTES

    return re.compile(rf"^(/[^/]+/myapp/(?:{'|'.join(PATH_TAIL_ROUTES)})/)(.*)$", re.DOTALL)


class _Request:
    """A WebOb request as openapi-core reads it to find the operation (the path, not the parameters:
    a response is checked against the operation of the request that got it)."""

    _legacy_tail = None

    def __init__(self, req):
        self.host_url = "http://localhost"
        # as the server received it (latin-1 text of the bytes): WebOb's decoded path_info raises
        # on a URL that is not UTF-8, which the API answers with a 400 that must be checked too
        self.path = req.environ.get("SCRIPT_NAME", "") + req.environ.get("PATH_INFO", "")
        # The legacy portal's routes end with a path, slashes included ({path:.*}), which an OpenAPI
        # template cannot say ({path} is one segment): the tail is matched as one escaped segment.
        if _Request._legacy_tail is None:
            _Request._legacy_tail = _legacy_tail_pattern()
        tail = _Request._legacy_tail.match(self.path)
        if tail:
            self.path = tail.group(1) + urllib.parse.quote(tail.group(2), safe="")
        self.method = req.method.lower()
        self.parameters = RequestParameters()
        self.content_type = (req.content_type or "").lower()
        self.body = None


class _Response:
    def __init__(self, response):
        self.status_code = response.status_int
        self.content_type = (response.headers.get("Content-Type") or "").lower()
        self.headers = dict(response.headers)
        self.data = response.body


class ServedDocument:
    """The OpenAPI document an app serves, ready to check responses against."""

    def __init__(self, document: dict):
        self.openapi = OpenAPI.from_dict(document)
        self.error = Draft202012Validator(document["components"]["schemas"]["Error"])


class ContractTestApp(TestApp):
    """A WebTest app whose every response is validated against the OpenAPI document that the app
    serves (fetched once per app), so the document cannot drift from what the service does."""

    served: ServedDocument | None = None

    def do_request(self, req, status=None, expect_errors=None):
        response = super().do_request(req, status=status, expect_errors=expect_errors)
        # HEAD answers as GET without a body, and a CORS preflight is the tween's: neither is an operation
        if req.method not in ("HEAD", "OPTIONS"):
            check_contract(self.served_document(), req, response)
        return response

    def served_document(self) -> ServedDocument:
        if self.served is None:
            served = super().do_request(TestRequest.blank("/api/v1/openapi.json"), status=200)
            self.served = ServedDocument(served.json)
        return self.served


def check_contract(served: ServedDocument, req, response) -> None:
    """Raise AssertionError when ``response`` is not what the document says ``req`` may get.

    A request that matches no documented operation (an unknown path or method, a URL that is not
    UTF-8) may only get an error in the documented envelope.
    """
    path = req.environ.get("PATH_INFO", "")
    for error in served.openapi.iter_response_errors(_Request(req), _Response(response)):
        if isinstance(error, PathError) and response.status_int >= 400:
            problems = [e.message for e in served.error.iter_errors(response.json)]
            if not problems:
                continue
            error = AssertionError(f"not the error envelope: {problems}")
        elif isinstance(error, MissingData) and not response.body and "json" not in response.content_type:
            continue  # an empty file is still a file (openapi-core takes no bytes for no content)
        detail = f"{type(error).__name__}: {error}"[:300]
        if isinstance(error, ResponseValidationError) and error.__cause__ is not None:
            schema_errors = getattr(error.__cause__, "schema_errors", ())
            detail += "".join(f"\n  {e.message[:200]} at {list(e.absolute_path)}" for e in schema_errors)
        raise AssertionError(
            f"{req.method} {path!r} -> {response.status}: not as the OpenAPI document says: {detail}"
        )


def make_app(settings: dict):
    from hcc_federation import main

    app = main({}, **settings)
    return ContractTestApp(app, extra_environ={"REMOTE_ADDR": "127.0.0.1"})


def login_token(app, users: dict, name: str = "alice", environ: dict | None = None) -> str:
    """Log a test user in on this app; the new session's bearer token."""
    body = {"username": name, "password": users[name]["password"]}
    return app.post_json("/api/v1/sessions", body, extra_environ=environ, status=201).json["token"]


def stop_testbed_daemon(pidfile: str, executable: str) -> None:
    """Stop one test bed daemon by the bed's own pid file (never by name), for an outage test.

    Pair it with run_testbed_up() in a finally: other tests expect the whole bed.
    """
    subprocess.run(
        [
            "start-stop-daemon",
            "--stop",
            "--quiet",
            "--pidfile",
            pidfile,
            "--exec",
            executable,
            "--retry",
            "TERM/10",
        ],
        check=True,
        timeout=30,
    )


def run_testbed_up() -> None:
    """Bring every test bed daemon back (idempotent): for tests that stop one on purpose."""
    subprocess.run(
        ["bash", str(ROOT / "scripts/testbed/up.sh")], check=True, capture_output=True, timeout=120
    )
