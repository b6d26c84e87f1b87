"""One bounded pool of threads for fan-out work (sacct beside squeue, every cluster at once, probes)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class FanOut:
    """Runs work beside the caller on at most ``max_workers`` shared threads, made at start-up.

    When every worker is busy, ``submit`` runs the work in the calling thread before returning (an
    already finished future): work is never queued behind other requests' work, so a task that
    itself fans out (a federated job list whose per-cluster lists run sacct and squeue at once) can
    never wait for a worker that waits for it, and the thread count stays bounded under any load.
    The cost of a full pool is only that the work runs one after the other, as it would without one.
    """

    def __init__(self, max_workers: int, name: str = "hcc-fanout") -> None:
        if max_workers < 1:
            raise ValueError("a fan-out needs at least one worker")
        self.max_workers = max_workers
        self._free = threading.BoundedSemaphore(max_workers)
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)

    @classmethod
    def for_clusters(cls, clusters: Iterable) -> FanOut:
        """Sized from the clusters' bulkheads (ClusterSettings.max_concurrent_requests).

        Every fan-out task acts on a cluster for a request that holds one of its slots, and one slot
        fans out at most two ways (a federated list's task for the cluster, and the squeue that runs
        beside its sacct); status probes add one per cluster. So this many workers serve every
        admitted request at full width, and more would only run work the bulkheads turn away.
        """
        clusters = list(clusters)
        return cls(max(1, 2 * sum(c.max_concurrent_requests for c in clusters) + len(clusters)))

    def submit(self, fn: Callable[..., T], *args, **kwargs) -> Future[T]:
        """``fn(*args, **kwargs)`` on a free worker, or here and now when none is free."""
        if not self._free.acquire(blocking=False):
            future: Future[T] = Future()
            future.set_running_or_notify_cancel()
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to the caller through the future, as a worker would
                future.set_exception(exc)
            return future

        def release_after() -> T:
            try:
                return fn(*args, **kwargs)
            finally:
                self._free.release()

        try:
            future = self._executor.submit(release_after)
        except BaseException:
            self._free.release()
            raise
        # a future cancelled before it started never runs release_after: give its worker back here
        future.add_done_callback(lambda done: done.cancelled() and self._free.release())
        return future

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
