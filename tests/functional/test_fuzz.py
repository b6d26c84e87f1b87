"""Fuzzing from the OpenAPI document (schemathesis) against a live service with a session.

Every documented operation gets generated requests that the document calls valid, sent through a
real waitress to the real test bed as alice. Checks: no 5xx, every error in the envelope, statuses,
content types and bodies as the document says.

Logging out and changing the password are fuzzed each with a session of their own, so that the
shared one lives on (no generated current_password is alice's, so her password never changes; the
bed's ppolicy never locks on failures). No job is ever run or cancelled: a generated inline script is
replaced by one that asks for a partition no cluster has (sbatch refuses it), and a generated job id
is moved above Slurm's MaxJobId (67043328), where no job of another test on the shared bed can be.
File paths are confined to a scratch directory of alice's, removed afterwards.

The run is derandomized so that CI is reproducible; HCC_FUZZ_EXAMPLES raises the examples per
operation and HCC_FUZZ_RANDOM=1 draws new inputs, for a longer hunt by hand.
"""

import os
import posixpath
import re
import uuid

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hcc_federation import main
from hcc_federation.api.error_map import all_codes
from tests.helpers import alice_work_dir, live_server, login_token

EXAMPLES = int(os.environ.get("HCC_FUZZ_EXAMPLES", "30"))
# Every operation, listed on purpose: a new one fails the test until someone decides here how it
# may be fuzzed on a shared bed (a route that starts something real needs a confinement first).
FUZZED = {
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/sessions"),
    ("GET", "/api/v1/sessions/current"),
    ("DELETE", "/api/v1/sessions/current"),
    ("GET", "/api/v1/me"),
    ("PUT", "/api/v1/me/password"),
    ("GET", "/api/v1/clusters"),
    ("GET", "/api/v1/clusters/{cluster}"),
    ("GET", "/api/v1/jobs"),
    ("GET", "/api/v1/clusters/{cluster}/jobs"),
    ("POST", "/api/v1/clusters/{cluster}/jobs"),
    ("GET", "/api/v1/clusters/{cluster}/jobs/{job_id}"),
    ("DELETE", "/api/v1/clusters/{cluster}/jobs/{job_id}"),
    # read-only, and its job id is moved out of Slurm's range like the others: never a real job
    ("GET", "/api/v1/clusters/{cluster}/jobs/{job_id}/output"),
    ("GET", "/api/v1/clusters/{cluster}/files"),
    ("DELETE", "/api/v1/clusters/{cluster}/files"),
    ("GET", "/api/v1/clusters/{cluster}/files/content"),
    ("PUT", "/api/v1/clusters/{cluster}/files/content"),
    ("POST", "/api/v1/clusters/{cluster}/files/upload"),
    ("POST", "/api/v1/clusters/{cluster}/files/mkdir"),
    ("POST", "/api/v1/clusters/{cluster}/files/touch"),
    ("POST", "/api/v1/clusters/{cluster}/files/move"),
    ("POST", "/api/v1/clusters/{cluster}/files/copy"),
    ("POST", "/api/v1/clusters/{cluster}/files/links"),
    ("GET", "/api/v1/links/{token}"),
    # the legacy portal's routes (hcc_federation/legacy): paths confined as above, the submitted
    # script nowhere, job ids past any real job's; change_password never changes anything here, as
    # the fuzzer sends no MyAuthorization password
    *(
        ("POST", f"/{{cluster}}/myapp/{route}")
        for route in (
            "login_user",
            "change_password",
            "submit_job",
            "cancel_job",
            "create_file",
            "create_directory",
            "update_file_directory",
            "delete_file_directory",
            "paste_file_directory",
            "start_jupyter",
            "stop_jupyter",
        )
    ),
    *(("POST", f"/{{cluster}}/myapp/{route}/{{path}}") for route in ("upload_file", "update_text")),
    *(
        ("GET", f"/{{cluster}}/myapp/{route}/{{path}}")
        for route in ("get_directory", "get_file", "get_download_link")
    ),
    ("GET", "/{cluster}/myapp/get_user"),
    ("GET", "/{cluster}/myapp/get_jobs/{day}"),
    ("GET", "/{cluster}/myapp/get_job_detail/{job_id}/"),
    ("GET", "/{cluster}/myapp/download/{token}"),
    ("GET", "/{cluster}/myapp/get_jupyters/{label}"),
    # notebooks are not enabled in these settings (no notebook_modes): a start is refused (400)
    # before anything runs, and there is no notebook to read or stop (legacy start_jupyter and
    # stop_jupyter above alike)
    ("GET", "/api/v1/notebooks"),
    ("GET", "/api/v1/clusters/{cluster}/notebooks"),
    ("POST", "/api/v1/clusters/{cluster}/notebooks"),
    ("GET", "/api/v1/clusters/{cluster}/notebooks/{notebook_id}"),
    ("DELETE", "/api/v1/clusters/{cluster}/notebooks/{notebook_id}"),
    # operations start real copies, moves and deletes: their paths are confined like the files routes'
    ("POST", "/api/v1/clusters/{cluster}/operations"),
    ("GET", "/api/v1/clusters/{cluster}/operations"),
    ("GET", "/api/v1/clusters/{cluster}/operations/{id}"),
    ("DELETE", "/api/v1/clusters/{cluster}/operations/{id}"),
    ("POST", "/api/v1/operations"),
    ("GET", "/api/v1/operations"),
}
# these end the caller's session(s) when they succeed: each example gets a fresh one
OWN_SESSION = {("DELETE", "/api/v1/sessions/current"), ("PUT", "/api/v1/me/password")}
PATH_FIELDS = ("path", "to", "work_dir", "src", "dest")
# where a generated script_path points: nowhere, so that sbatch never runs a file that another
# generated request wrote into the scratch directory
NO_SCRIPTS = "/nonexistent/hcc-fuzz"
REFUSED_SCRIPT = "#!/bin/sh\n#SBATCH --partition=hcc-fuzz-no-such-partition\ntrue\n"


@pytest.fixture
def live_service(settings, users):
    """The app under a real waitress on MariaDB, and alice's bearer token."""
    if settings["hcc.database.url"].startswith("sqlite"):
        # one run, on the production database, keeps the fuzz within its minute; the contract
        # tests already hold SQLite to the same answers
        pytest.skip("fuzzed on MariaDB")
    # generated logins and password changes fail by the hundred: with the usual limits the fresh
    # sessions that logout and the password change need would be refused (429) part way through
    unthrottled = {f"hcc.auth.throttle_max_per_{who}": "1000000" for who in ("user", "address")}
    app = main({}, **{**settings, **unthrottled})
    with live_server(app, threads=4, clear_untrusted_proxy_headers=False) as base_url:
        from webtest import TestApp

        token = login_token(TestApp(app), users, "alice")
        yield base_url, token


def fresh_token(base_url: str, users: dict) -> str:
    body = {"username": "alice", "password": users["alice"]["password"]}
    r = requests.post(base_url + "/api/v1/sessions", json=body, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["token"]


def confined(path: object, scratch: str) -> object:
    """A generated absolute path moved under the scratch directory (``..`` cannot climb out)."""
    if not isinstance(path, str):
        return path
    return posixpath.join(scratch, posixpath.normpath("/" + path).lstrip("/")).rstrip("/")


def unreal_job_id(job_id: object) -> object:
    """A generated job id with its number moved to 1e9 and above, past any real job's."""
    if not isinstance(job_id, str):
        return job_id
    match = re.match(r"[0-9]+", job_id)
    if not match:
        return job_id
    return str(10**9 + int(match.group()) % 10**9) + job_id[match.end() :]


def confine(case, scratch: str) -> None:
    if isinstance(case.path_parameters, dict) and "job_id" in case.path_parameters:
        case.path_parameters["job_id"] = unreal_job_id(case.path_parameters["job_id"])
    if isinstance(case.path_parameters, dict) and "path" in case.path_parameters:
        # a legacy route's path tail
        case.path_parameters["path"] = confined(case.path_parameters["path"], scratch)
    if isinstance(case.body, dict) and "jobId" in case.body:
        case.body["jobId"] = unreal_job_id(case.body["jobId"])
    if case.operation.path.endswith("/submit_job") and isinstance(case.body, dict) and "path" in case.body:
        # the legacy submit's script path: nowhere, as script_path
        case.body["path"] = confined(case.body["path"], NO_SCRIPTS)
        return
    if isinstance(case.body, dict) and isinstance(case.body.get("script"), str):
        case.body["script"] = REFUSED_SCRIPT
    if isinstance(case.body, dict) and "script_path" in case.body:
        case.body["script_path"] = confined(case.body["script_path"], NO_SCRIPTS)
    if isinstance(case.query, dict):
        for name in PATH_FIELDS:
            if name in case.query:
                case.query[name] = confined(case.query[name], scratch)
    if isinstance(case.body, dict):
        for name in PATH_FIELDS:
            if name in case.body:
                case.body[name] = confined(case.body[name], scratch)
        # a copy between clusters: {"from": {"cluster", "path"}, "to": {"cluster", "path"}}
        for name in ("from", "to"):
            end = case.body.get(name)
            if isinstance(end, dict) and "path" in end:
                end["path"] = confined(end["path"], scratch)


def envelope_problem(response) -> str | None:
    """What is wrong with an error response's envelope, if anything."""
    try:
        body = response.json()
    except ValueError:
        return f"not JSON: {response.text[:200]!r}"
    if not isinstance(body, dict) or body.get("status") != "error" or not body.get("errors"):
        return f"not an error envelope: {str(body)[:200]}"
    for error in body["errors"]:
        if not isinstance(error.get("location"), str) or not isinstance(error.get("description"), str):
            return f"an error without location or description: {error}"
        if "name" not in error:
            return f"an error without a name: {error}"
        if error.get("code") not in all_codes():
            return f"an error without a documented code: {error}"
    return None


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def fuzz_operation(operation, send, failures: list[str]) -> None:
    """Generated requests for one operation (valid and invalid ones), each sent by ``send(case)``."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=os.environ.get("HCC_FUZZ_RANDOM") != "1",
        # no shrinking: a failure is reported as found, and the run stays bounded
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)
    )
    def fuzz(case):
        response, headers = send(case)
        label = f"{case.method} {response.request.path_url[:300]}"
        if os.environ.get("HCC_FUZZ_TRACE"):
            print("FUZZ", response.status_code, label[:200])
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Exception, BaseExceptionGroup) as exc:  # collect them all, then fail once
            failures.append(f"{label} -> {response.status_code}: {str(exc)[:600]}")
            return
        if response.status_code >= 400:
            problem = envelope_problem(response)
            if problem:
                failures.append(f"{label} -> {response.status_code}: {problem}")

    fuzz()


def test_every_operation_holds_up_under_generated_requests(live_service, users):
    base_url, token = live_service
    auth = {"Authorization": f"Bearer {token}"}
    doc = requests.get(base_url + "/api/v1/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(doc)
    session = requests.Session()
    failures: list[str] = []
    fuzzed = []
    with alice_work_dir(users, "fuzz") as scratch:

        def send(case):
            confine(case, str(scratch))
            headers = auth
            if (case.method.upper(), case.operation.path) in OWN_SESSION:
                headers = {"Authorization": f"Bearer {fresh_token(base_url, users)}"}
            return case.call(base_url=base_url, session=session, headers=headers, timeout=60), headers

        operations = [result.ok() for result in schema.get_all_operations()]
        documented = {(op.method.upper(), op.path) for op in operations}
        assert documented == FUZZED, f"decide how to fuzz {documented - FUZZED}; drop {FUZZED - documented}"
        for operation in operations:
            fuzzed.append(f"{operation.method.upper()} {operation.path}")
            fuzz_operation(operation, send, failures)
        # the shared session is still alive: nothing the fuzzer sent with it ended it
        alive = requests.get(base_url + "/api/v1/sessions/current", headers=auth, timeout=30)
        assert alive.status_code == 200
    assert len(fuzzed) == len(FUZZED)
    assert not failures, "\n".join(failures[:30])


def test_the_fuzzers_confinement_cannot_climb_out_or_reach_a_real_job():
    scratch = f"/home/alice/fuzz-{uuid.uuid4().hex[:6]}"
    for hostile in ("/..", "/../..", "/a/../../b", "//etc/passwd", "/./../x/"):
        assert confined(hostile, scratch).startswith(scratch)
    for job_id in ("0", "3", "67043328", "0596907107_4119276", "22098+7346", "9999999999"):
        moved = unreal_job_id(job_id)
        assert int(re.match("[0-9]+", moved).group()) > 67043328
        assert moved.endswith(job_id[len(re.match("[0-9]+", job_id).group()) :])
