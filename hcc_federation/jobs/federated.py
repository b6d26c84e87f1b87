"""The caller's jobs on every cluster at once: each cluster's list, or what failed it (no Pyramid)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout

from ..fanout import FanOut
from ..remote.errors import RemoteTimeout
from .parsers import Job

# A federated list waits for a cluster this long beyond its own connect and command timeouts.
GRACE_SECONDS = 2.0


def list_everywhere(
    lists: Mapping[str, Callable[[], list[Job]]],
    budgets: Mapping[str, float],
    fanout: FanOut,
    grace: float = GRACE_SECONDS,
) -> tuple[dict[str, list[Job]], dict[str, BaseException]]:
    """Run every cluster's ``lists[name]()`` at once; the jobs of those that answered, and the failure
    of each that did not (``RemoteTimeout`` past its ``budgets[name]`` seconds plus ``grace``).

    On the shared fan-out, never queued behind other requests' work (when it is full, a cluster's
    list runs in this thread). A late cluster is left to finish on its own (its command timeout
    ends it) while the answer goes out without it.
    """
    found: dict[str, list[Job]] = {}
    failed: dict[str, BaseException] = {}
    futures = {}
    try:
        started = time.monotonic()
        futures = {name: fanout.submit(run) for name, run in lists.items()}
        for name, future in futures.items():
            remaining = budgets[name] + grace - (time.monotonic() - started)
            try:
                found[name] = future.result(timeout=max(0, remaining))
            except FutureTimeout:
                failed[name] = RemoteTimeout(name, f"no answer within {budgets[name]:g} s")
            except Exception as exc:  # one cluster's failure is its entry, never the whole answer's
                failed[name] = exc
    finally:
        for future in futures.values():
            future.cancel()
    return found, failed
