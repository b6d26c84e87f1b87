"""glibc malloc tuned at start-up (mmap threshold pinned, arenas capped), so that large transfers do
not leave RSS behind."""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

# from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# Blocks of this size and more are mmap()ed and go back to the kernel when freed. Above the 256 KiB
# chunks the file streams use, so those stay in the heap and are reused (256 KiB cost 10-25% of the
# download throughput in page faults here; 1 MiB did not measurably).
MMAP_THRESHOLD = 1024 * 1024
# At most this many malloc arenas (glibc's default: a new one for each thread, up to 8 per core).
# Each arena keeps the free chunks that the downloads run by its threads left (paramiko buffers,
# 256 KiB chunks, waitress's output buffer below the threshold), about 1.5 MiB a waitress thread:
# with 16 threads, sixteen 256 MiB downloads took a pserve from 94 to 121 MiB and still climbing,
# as the requests went round the threads; with 2 arenas it stayed at 97-102 MiB, at the same
# throughput (bench/bench_memory.py). Python holds the GIL for most of its work, so threads seldom
# wait for an arena (listings per second were the same within the noise).
ARENA_MAX = 2
# An admin who tunes malloc through the environment keeps what they chose.
_ADMIN_TUNABLES = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
    "MALLOC_ARENA_MAX",
    "MALLOC_ARENA_TEST",
)


def _mallopt():
    """glibc's mallopt, or None (not glibc: macOS and musl have none)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt


def admin_tuned_malloc() -> bool:
    """Whether malloc was tuned through the environment (``MALLOC_*`` or ``glibc.malloc`` tunables)."""
    return any(name in os.environ for name in _ADMIN_TUNABLES) or "glibc.malloc" in os.environ.get(
        "GLIBC_TUNABLES", ""
    )


def _set_unless_admin_tuned(param: int, value: int, refused: str) -> bool:
    """mallopt(param, value) unless the admin tuned malloc; whether it was set (``refused`` logged if not)."""
    if admin_tuned_malloc():
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    done = bool(mallopt(param, value))
    if not done:
        log.info(refused)
    return done


def pin_malloc_thresholds() -> bool:
    """Fix glibc's mmap threshold (and with it the trim threshold) instead of letting them grow.

    Why: by default glibc raises both thresholds to the size of the largest mmapped block freed so
    far (up to 32 MiB), after which freed memory stays in each thread's malloc arena instead of going
    back to the kernel. A download frees such blocks (paramiko's channel buffer grows to its 2 MiB
    window; waitress's output buffers reach 1 MiB), and every waitress thread has an arena of its
    own: twenty 100 MiB downloads and uploads took a 16-thread pserve from 87 to 318 MiB RSS, and 50
    downloads alone to 445 MiB (bench/bench_memory.py). With the threshold set once, which also
    stops the dynamic adjustment, the same run stays at 91 MiB; MALLOC_ARENA_MAX=2 alone only bounds it
    (145 MiB), and malloc_trim(0) after each download did nothing (it does not shrink the top of a
    thread's heap). Returns whether the threshold was set (not on a C library without mallopt).
    """
    return _set_unless_admin_tuned(
        M_MMAP_THRESHOLD,
        MMAP_THRESHOLD,
        "mallopt(M_MMAP_THRESHOLD) refused: RSS may grow after large transfers",
    )


def cap_malloc_arenas(arenas: int = ARENA_MAX) -> bool:
    """Let glibc make at most ``arenas`` malloc arenas (see ARENA_MAX), unless the admin tuned malloc.

    Called as the app is made: under pserve before waitress starts its threads, which then share
    the arenas; under mod_wsgi a request thread that already has an arena of its own keeps it, the
    later ones share. Returns whether the cap was set.
    """
    return _set_unless_admin_tuned(
        M_ARENA_MAX, arenas, "mallopt(M_ARENA_MAX) refused: RSS may grow with each server thread"
    )


def includeme(config) -> None:
    pin_malloc_thresholds()
    cap_malloc_arenas()
