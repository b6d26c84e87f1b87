"""The functional tests' contract check refuses a response that the OpenAPI document does not allow."""

import json

import pytest
from webob import Request, Response

import hcc_federation.api.sessions  # noqa: F401  (declares the sessions services)
from hcc_federation.api.openapi import build_document
from tests.helpers import ServedDocument, check_contract

CURRENT = Request.blank("/api/v1/sessions/current")
TIME = "2026-11-30T01:31:32Z"


def _json(body, status=200) -> Response:
    return Response(json.dumps(body).encode(), status=status, content_type="application/json")


@pytest.fixture(scope="module")
def served():
    return ServedDocument(build_document(clusters=["alpha"]))


def test_a_response_as_documented_passes(served):
    check_contract(served, CURRENT, _json({"username": "alice", "created_at": TIME, "expires_at": TIME}))
    check_contract(served, CURRENT, _json({"status": "error", "errors": []}, status=401))


@pytest.mark.parametrize(
    "response",
    [
        _json({"username": 3, "created_at": TIME, "expires_at": TIME}),  # a field of another type
        _json({"username": "alice", "created_at": TIME, "expires_at": "2026-11-30T01:31:32+00:00"}),
        _json({"error": "no"}, status=401),  # not the envelope
        _json({"status": "error", "errors": []}, status=418),  # a status the operation does not list
    ],
)
def test_a_response_that_drifted_from_the_document_fails(served, response):
    with pytest.raises(AssertionError, match="not as the OpenAPI document says"):
        check_contract(served, CURRENT, response)


def test_an_undocumented_route_may_only_answer_an_error_envelope(served):
    unknown = Request.blank("/api/v1/nowhere")
    check_contract(served, unknown, _json({"status": "error", "errors": []}, status=404))
    with pytest.raises(AssertionError):
        check_contract(served, unknown, _json({"ok": True}))


def test_a_job_must_carry_exactly_the_declared_fields():
    import hcc_federation.jobs.views  # noqa: F401  (declares the jobs services)
    from hcc_federation.jobs.schemas import JOB_FIELDS

    served = ServedDocument(build_document(clusters=["alpha"]))
    listing = Request.blank("/api/v1/clusters/alpha/jobs")
    job = {**dict.fromkeys(JOB_FIELDS), "id": "1", "name": "x", "state": "RUNNING", "elapsed_seconds": 0}
    check_contract(served, listing, _json({"cluster": "alpha", "jobs": [job]}))
    missing = {k: v for k, v in job.items() if k != "exit_code"}
    for drifted in (missing, {**job, "extra": 1}):
        with pytest.raises(AssertionError):
            check_contract(served, listing, _json({"cluster": "alpha", "jobs": [drifted]}))
