"""The all-clusters job list as a service: every cluster at once, each failure its own entry."""

import threading
import time

from hcc_federation.fanout import FanOut
from hcc_federation.jobs.federated import list_everywhere
from hcc_federation.remote.errors import RemoteTimeout


def test_each_cluster_answers_or_fails_on_its_own_within_its_budget():
    fanout = FanOut(4)
    release = threading.Event()

    def hung():
        release.wait(5)
        return []

    def broken():
        raise ValueError("sacct said no")

    lists = {"alpha": lambda: [{"id": "1"}], "beta": hung, "gamma": broken}
    started = time.monotonic()
    try:
        found, failed = list_everywhere(lists, {"alpha": 1, "beta": 0.2, "gamma": 1}, fanout, grace=0)
    finally:
        release.set()
        fanout.shutdown()
    # the hung cluster costs its own budget, not the sum, and the others still answer
    assert time.monotonic() - started < 1
    assert found == {"alpha": [{"id": "1"}]}
    assert isinstance(failed["beta"], RemoteTimeout) and "no answer within 0.2 s" in str(failed["beta"])
    assert isinstance(failed["gamma"], ValueError)


def test_the_lists_run_at_once():
    fanout = FanOut(4)
    barrier = threading.Barrier(3, timeout=2)

    def meet():
        barrier.wait()  # only passes when all three run at the same time
        return []

    try:
        found, failed = list_everywhere({n: meet for n in ("a", "b", "c")}, dict.fromkeys("abc", 5), fanout)
    finally:
        fanout.shutdown()
    assert failed == {} and found == {"a": [], "b": [], "c": []}
