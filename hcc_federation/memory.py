"""glibc malloc thresholds pinned at start-up, so that large transfers do not leave RSS behind."""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

# from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
# Blocks of this size and more are mmap()ed and go back to the kernel when freed. Above the 256 KiB
# chunks the file streams use, so those stay in the heap and are reused (256 KiB cost 10-25% of the
# download throughput in page faults here; 1 MiB did not measurably).
MMAP_THRESHOLD = 1024 * 1024
# An admin who tunes malloc through the environment keeps what they chose.
_ADMIN_TUNABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def pin_malloc_thresholds() -> bool:
    """Fix glibc's mmap threshold (and with it the trim threshold) instead of letting them grow.

    Why: by default glibc raises both thresholds to the size of the largest mmapped block freed so
    far (up to 32 MiB), after which freed memory stays in each thread's malloc arena instead of going
    back to the kernel. A download frees such blocks (paramiko's channel buffer grows to its 2 MiB
    window; waitress's output buffers reach 1 MiB), and every waitress thread has an arena of its
    own: twenty 100 MiB downloads and uploads took a 16-thread pserve from 87 to 318 MiB RSS, and 50
    downloads alone to 445 MiB (bench/bench_memory.py). With the threshold set once, which also
    stops the dynamic adjustment, the same run stays at 91 MiB; MALLOC_ARENA_MAX=2 only bounds it
    (145 MiB), and malloc_trim(0) after each download did nothing (it does not shrink the top of a
    thread's heap). Returns whether the threshold was set (not on a C library without mallopt).
    """
    if any(name in os.environ for name in _ADMIN_TUNABLES) or "glibc.malloc" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # not glibc (macOS has no mallopt)
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if not done:
        log.info("mallopt(M_MMAP_THRESHOLD) refused: RSS may grow after large transfers")
    return done


def includeme(config) -> None:
    pin_malloc_thresholds()
