"""Health for load balancers: each dependency checked in parallel under a timeout."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from cornice import Service
from pyramid.security import NO_PERMISSION_REQUIRED
from sqlalchemy import text

from .docs import documented

health = Service(name="health", path="/api/v1/health", description="Service health")

CHECK_TIMEOUT = 3.0
# shared by every request: a health probe must not start threads of its own each time
_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hcc-health")

HEALTH_OUT = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ok"]},
        "checks": {"type": "object", "additionalProperties": {"type": "object"}},
    },
}


def _check_database(registry) -> None:
    with registry.hcc_engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _check_ldap(registry) -> None:
    registry.hcc_directory.check()


CHECKS = {"database": _check_database, "ldap": _check_ldap}
# the envelope's code for a failed check: the one the same outage gives any other request
CHECK_CODES = {"database": "database_unavailable", "ldap": "directory_unavailable"}


def _timed(check, registry) -> float:
    start = time.monotonic()
    check(registry)
    return (time.monotonic() - start) * 1000


@health.get(permission=NO_PERMISSION_REQUIRED)
@documented(200, 503, response=HEALTH_OUT, tag="health")
def get_health(request):
    """Whether the database and the directory answer; 503 when one does not."""
    futures = {name: _executor.submit(_timed, check, request.registry) for name, check in CHECKS.items()}
    deadline = time.monotonic() + CHECK_TIMEOUT
    results = {}
    for name, future in futures.items():
        try:
            ms = future.result(timeout=max(0.0, deadline - time.monotonic()))
            results[name] = {"ok": True, "ms": round(ms, 1)}
        except FutureTimeout:
            results[name] = {"ok": False, "error": f"no answer within {CHECK_TIMEOUT} s"}
        except Exception as exc:  # a check's failure is its result, never a 500
            results[name] = {"ok": False, "error": getattr(exc, "description", exc.__class__.__name__)}
    failed = [
        {"location": "body", "name": name, "description": r["error"], "code": CHECK_CODES[name]}
        for name, r in results.items()
        if not r["ok"]
    ]
    if failed:
        # the one error envelope, with the full report beside it
        request.response.status = 503
        return {"status": "error", "errors": failed, "checks": results}
    return {"status": "ok", "checks": results}
