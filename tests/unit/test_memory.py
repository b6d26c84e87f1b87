"""glibc malloc: thresholds pinned and arenas capped at start-up, unless the admin tuned malloc through
the environment."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from hcc_federation import memory

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


@glibc_only
def test_the_mmap_threshold_is_pinned(monkeypatch):
    for name in (*memory._ADMIN_TUNABLES, "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    assert memory.pin_malloc_thresholds() is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MALLOC_MMAP_THRESHOLD_", "262144"),
        ("MALLOC_TRIM_THRESHOLD_", "1048576"),
        ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536"),
    ],
)
def test_an_admins_malloc_tuning_is_left_alone(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    calls = []
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda *_: calls.append(1))
    assert memory.pin_malloc_thresholds() is False
    assert calls == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("MALLOC_ARENA_MAX", "4"), ("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")],
)
def test_an_admins_arena_count_is_left_alone(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    calls = []
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda *_: calls.append(1))
    assert memory.cap_malloc_arenas() is False
    assert calls == []


# Threads that allocate at once, each holding on to a block while the others allocate, in a fresh
# interpreter: prints how many malloc arenas glibc made (malloc_info's <heap> elements).
_ARENAS_SCRIPT = """
import ctypes, sys, tempfile, threading
from hcc_federation import memory
if sys.argv[1] == "capped":
    assert memory.cap_malloc_arenas()
libc = ctypes.CDLL(None)
barrier = threading.Barrier(8)
def work():
    block = bytearray(100_000)  # above pymalloc's 512 bytes: malloc's
    barrier.wait()
    more = [bytearray(100_000) for _ in range(20)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
libc.fclose.argtypes = (ctypes.c_void_p,)
with tempfile.NamedTemporaryFile() as out:
    handle = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, handle)
    libc.fclose(handle)
    print(open(out.name).read().count("<heap nr="))
"""


@glibc_only
def test_the_arena_cap_makes_threads_share_arenas():
    # without the cap each of the 8 threads gets an arena of its own (up to 8 per core), and every
    # arena keeps what its thread's downloads freed
    root = Path(__file__).resolve().parent.parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env["PYTHONPATH"] = str(root)

    def arenas(mode: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", _ARENAS_SCRIPT, mode], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    assert arenas("capped") <= memory.ARENA_MAX
    assert arenas("glibc") > memory.ARENA_MAX
