"""Fuzzing from the OpenAPI document (schemathesis) against a live service with a session.

Every documented operation gets generated requests that the document calls valid, sent through a
real waitress to the real test bed as alice. Checks: no 5xx, every error in the envelope, statuses,
content types and bodies as the document says.

Logging out and changing the password are fuzzed each with a session of their own, so that the
shared one lives on (no generated current_password is alice's, so her password never changes; the
bed's ppolicy never locks on failures). Submitting and cancelling jobs are not fuzzed: a fuzzer would
submit hundreds of real jobs, and cancel alice's jobs of other tests running on the same bed.
File paths are confined to a scratch directory of alice's, removed afterwards.

The run is derandomized so that CI is reproducible; HCC_FUZZ_EXAMPLES raises the examples per
operation and HCC_FUZZ_RANDOM=1 draws new inputs, for a longer hunt by hand.
"""

import os
import posixpath
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
from tests.conftest import login_token
from tests.helpers import alice_work_dir, live_server

EXAMPLES = int(os.environ.get("HCC_FUZZ_EXAMPLES", "20"))
NOT_FUZZED = {
    ("POST", "/api/v1/clusters/{cluster}/jobs"),
    ("DELETE", "/api/v1/clusters/{cluster}/jobs/{job_id}"),
}
# these end the caller's session(s) when they succeed: each example gets a fresh one
OWN_SESSION = {("DELETE", "/api/v1/sessions/current"), ("PUT", "/api/v1/me/password")}
PATH_FIELDS = ("path", "to")


@pytest.fixture
def live_service(settings, users):
    """The app under a real waitress (on SQLite and on MariaDB), and alice's bearer token."""
    app = main({}, **settings)
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


def confine(case, scratch: str) -> None:
    if isinstance(case.query, dict):
        for name in PATH_FIELDS:
            if name in case.query:
                case.query[name] = confined(case.query[name], scratch)
    if isinstance(case.body, dict):
        for name in PATH_FIELDS:
            if name in case.body:
                case.body[name] = confined(case.body[name], scratch)


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

        for result in schema.get_all_operations():
            operation = result.ok()
            key = (operation.method.upper(), operation.path)
            if key not in NOT_FUZZED:
                fuzzed.append(" ".join(key))
                fuzz_operation(operation, send, failures)
        # the shared session is still alive: nothing the fuzzer sent with it ended it
        alive = requests.get(base_url + "/api/v1/sessions/current", headers=auth, timeout=30)
        assert alive.status_code == 200
    assert len(fuzzed) >= 22, fuzzed
    assert not failures, "\n".join(failures[:30])


def test_the_scratch_confinement_cannot_climb_out():
    scratch = f"/home/alice/fuzz-{uuid.uuid4().hex[:6]}"
    for hostile in ("/..", "/../..", "/a/../../b", "//etc/passwd", "/./../x/"):
        assert confined(hostile, scratch).startswith(scratch)
