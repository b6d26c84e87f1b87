"""Per-cluster bulkheads: a cluster that hangs may hold only its share of the service's threads."""

from __future__ import annotations

import threading
import time

from .errors import DomainError


class ClusterBusy(DomainError):
    """The cluster already has its share of requests in progress (it is slow or hung)."""

    field = "cluster"
    # the requests in progress there take seconds at most, or fail by their own timeouts
    retry_after = 2


class Bulkhead:
    """At most ``limit`` requests use one cluster at once; one more waits while the cluster makes
    progress, and fails fast once it does not.

    Without it, eight requests to one blackholed cluster took every waitress thread and a request to
    another cluster waited 18.2 s instead of 0.04 s. But a plain queue timeout also turned a healthy
    cluster's bursts into 503s: 100 clients on alpha alone, with a share of 4 and 0.5 s to wait, got
    14 errors in 900 requests and half the throughput (53 against 94-112 req/s without the share).
    So a waiting request is refused only when no request of the cluster has finished (nor started
    on a free slot) for ``stall_timeout`` seconds, which a hung cluster shows at once and a busy one
    never; and in any case after ``max_wait`` seconds.
    """

    def __init__(self, cluster: str, limit: int, stall_timeout: float, max_wait: float = 60.0):
        self.cluster = cluster
        self.limit = limit
        self.stall_timeout = stall_timeout
        self.max_wait = max_wait
        self._cond = threading.Condition()
        # when the cluster last showed progress: a request ended, or one started on a free slot
        self._progress_at = time.monotonic()
        self.in_use = 0
        self.refused = 0

    def acquire(self) -> None:
        now = time.monotonic()
        deadline = now + self.max_wait
        with self._cond:
            while self.in_use >= self.limit:
                stalled_until = self._progress_at + self.stall_timeout
                if now >= stalled_until or now >= deadline:
                    self.refused += 1
                    raise self._busy(stalled=now >= stalled_until)
                self._cond.wait(min(stalled_until, deadline) - now)
                now = time.monotonic()
            self.in_use += 1
            self._progress_at = now

    def release(self) -> None:
        with self._cond:
            self.in_use -= 1
            self._progress_at = time.monotonic()
            self._cond.notify()

    def _busy(self, *, stalled: bool) -> ClusterBusy:
        why = (
            f"none of them has finished for {self.stall_timeout:g} s (it may be slow or down)"
            if stalled
            else f"no slot came free within {self.max_wait:g} s"
        )
        return ClusterBusy(
            f"cluster {self.cluster!r}: {self.limit} requests are already in progress there and {why}; "
            "try again shortly"
        )


class ReleasingBody:
    """A WSGI app_iter that releases bulkheads when the server closes it (a streamed body ended)."""

    def __init__(self, app_iter, bulkheads: list[Bulkhead]):
        self._app_iter = app_iter
        self._bulkheads = bulkheads

    def __iter__(self):
        return iter(self._app_iter)

    def close(self) -> None:
        try:
            close = getattr(self._app_iter, "close", None)
            if close is not None:
                close()
        finally:
            release_all(self._bulkheads)


def release_all(bulkheads: list[Bulkhead]) -> None:
    while bulkheads:
        bulkheads.pop().release()
