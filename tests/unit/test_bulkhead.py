"""Per-cluster bulkheads: the share, the fast 503 beyond it, and the release when a body is closed."""

import threading
import time

import pytest

from hcc_federation.api.error_map import mapping_for
from hcc_federation.bulkhead import Bulkhead, ClusterBusy, ReleasingBody
from hcc_federation.settings import SettingsError, parse_settings
from tests.helpers import BASE_SETTINGS


def test_requests_beyond_the_share_of_a_stalled_cluster_get_503_with_retry_after():
    bulkhead = Bulkhead("beta", 2, stall_timeout=0.05)
    bulkhead.acquire()
    bulkhead.acquire()
    started = time.monotonic()
    with pytest.raises(ClusterBusy) as caught:
        bulkhead.acquire()
    assert time.monotonic() - started < 0.5
    assert mapping_for(caught.value).status == 503 and caught.value.retry_after == 2
    assert "'beta': 2 requests are already in progress" in caught.value.description
    # nothing has finished since: the next one is refused at once, without waiting again
    started = time.monotonic()
    with pytest.raises(ClusterBusy):
        bulkhead.acquire()
    assert time.monotonic() - started < 0.02
    bulkhead.release()
    bulkhead.acquire()
    assert (bulkhead.in_use, bulkhead.refused) == (2, 2)


def test_a_busy_cluster_that_makes_progress_keeps_its_queue():
    # one slot, taken by a request after another, each finishing within the stall timeout: a
    # request behind five of them waits far longer than the stall timeout, and gets its turn
    bulkhead = Bulkhead("alpha", 1, stall_timeout=0.3)
    bulkhead.acquire()
    done = threading.Event()

    def others():
        for _ in range(5):
            time.sleep(0.1)
            bulkhead.release()
            bulkhead.acquire()
        time.sleep(0.1)
        bulkhead.release()
        done.set()

    worker = threading.Thread(target=others)
    started = time.monotonic()
    worker.start()
    time.sleep(0.05)  # the worker holds the slot now
    bulkhead.acquire()  # queued behind the worker's releases and re-acquires, never refused
    waited = time.monotonic() - started
    worker.join()
    bulkhead.release()
    assert bulkhead.refused == 0
    assert waited > 0.3


def test_a_slot_that_never_comes_free_is_refused_after_the_maximum_wait():
    bulkhead = Bulkhead("alpha", 1, stall_timeout=10, max_wait=0.1)
    bulkhead.acquire()
    with pytest.raises(ClusterBusy, match="no slot came free within 0.1 s"):
        bulkhead.acquire()


def test_a_streamed_body_gives_the_slot_back_when_closed_even_if_its_close_fails():
    bulkhead = Bulkhead("alpha", 1, stall_timeout=0)

    class Body:
        def __iter__(self):
            return iter([b"a", b"b"])

        def close(self):
            raise OSError("the channel was already gone")

    bulkhead.acquire()
    body = ReleasingBody(Body(), [bulkhead])
    assert b"".join(body) == b"ab"
    assert bulkhead.in_use == 1
    with pytest.raises(OSError):
        body.close()
    assert bulkhead.in_use == 0
    bulkhead.acquire()


def _cluster_raw(**keys):
    raw = {
        **BASE_SETTINGS,
        "hcc.clusters": "alpha",
        "hcc.cluster.alpha.host": "h",
        "hcc.cluster.alpha.known_hosts": "/k",
    }
    raw.update({f"hcc.cluster.alpha.{k}": v for k, v in keys.items()})
    return raw


def test_the_share_is_a_cluster_setting_with_a_default_below_waitress_threads():
    cluster = parse_settings(_cluster_raw(), environ={}).clusters[0]
    assert (cluster.max_concurrent_requests, cluster.queue_timeout) == (8, 1.0)
    cluster = parse_settings(
        _cluster_raw(max_concurrent_requests="6", queue_timeout="0"), environ={}
    ).clusters[0]
    assert (cluster.max_concurrent_requests, cluster.queue_timeout) == (6, 0.0)
    with pytest.raises(SettingsError, match="max_concurrent_requests must be at least 1"):
        parse_settings(_cluster_raw(max_concurrent_requests="0"), environ={})
