"""The shared fan-out: bounded threads, work never queued behind a busy pool, nested fan-out never stuck."""

import threading

import pytest

from hcc_federation.fanout import FanOut


def test_work_beyond_the_bound_runs_in_the_calling_thread_instead_of_waiting():
    fanout = FanOut(2, name="test-fanout")
    release = threading.Event()
    started = threading.Barrier(3)

    def hold():
        started.wait(5)
        release.wait(5)
        return threading.current_thread().name

    try:
        busy = [fanout.submit(hold) for _ in range(2)]
        started.wait(5)
        # both workers are taken: the third runs here, at once, rather than waiting for one
        third = fanout.submit(lambda: threading.current_thread().name)
        assert third.done() and third.result() == threading.current_thread().name
        release.set()
        assert all(f.result(5).startswith("test-fanout") for f in busy)
    finally:
        release.set()
        fanout.shutdown()


def test_a_task_that_fans_out_again_finishes_even_with_one_worker():
    fanout = FanOut(1)
    try:
        outer = fanout.submit(lambda: fanout.submit(lambda: 41).result(5) + 1)
        assert outer.result(5) == 42
    finally:
        fanout.shutdown()


def test_an_exception_reaches_the_caller_whichever_thread_ran_the_work():
    fanout = FanOut(1)
    release = threading.Event()
    try:
        on_worker = fanout.submit(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            on_worker.result(5)
        blocker = fanout.submit(release.wait, 5)
        inline = fanout.submit(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            inline.result(0)
        release.set()
        blocker.result(5)
    finally:
        release.set()
        fanout.shutdown()


def test_a_cancelled_task_gives_its_worker_back():
    fanout = FanOut(1)
    release = threading.Event()
    try:
        # keep the executor's only thread busy behind fanout's back, so that the next task queues
        outside = fanout._executor.submit(release.wait, 5)
        queued = fanout.submit(lambda: "never")
        assert queued.cancel()
        release.set()
        outside.result(5)
        # its slot came back: the next task runs on a worker, not inline
        assert (
            fanout.submit(lambda: threading.current_thread().name).result(5)
            != threading.current_thread().name
        )
    finally:
        release.set()
        fanout.shutdown()


def test_the_size_follows_the_clusters_bulkheads():
    class C:
        def __init__(self, slots):
            self.max_concurrent_requests = slots

    assert FanOut.for_clusters([C(4), C(4)]).max_workers == 2 * 8 + 2
    assert FanOut.for_clusters([]).max_workers == 1
