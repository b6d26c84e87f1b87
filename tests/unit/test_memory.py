"""glibc malloc thresholds: pinned at start-up unless the admin tuned malloc through the environment."""

import platform

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
