"""reloc.allocator: glibc keeps freed memory for reuse (fewer page faults per allocation)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reloc import allocator

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")

# Allocates and frees the kind of tensors a training step does, 30 times, and prints the page
# faults that cost; argv[1] == "1" applies retain_freed_memory() first.
PROBE = """
import resource, sys, torch
from reloc.allocator import retain_freed_memory
if sys.argv[1] == "1":
    assert retain_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    a = torch.empty(15 << 20).fill_(1.0)  # 60 MB, above the mmap threshold
    b = torch.empty(6 << 20).fill_(2.0)   # 24 MB, below it
    del a, b
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(tuned: bool, env: dict | None = None) -> int:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "1" if tuned else "0"], capture_output=True, text=True, check=True, env=env
    )
    return int(result.stdout.strip().splitlines()[-1])


def test_retained_memory_cuts_page_faults():
    default, tuned = _faults(False), _faults(True)
    assert tuned < default / 3, (default, tuned)


def test_environment_settings_win(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert allocator.retain_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1000000")
    assert allocator.retain_freed_memory() is False


def test_without_mallopt_it_is_a_no_op(monkeypatch):
    def missing(*_):
        raise OSError("no such library")

    monkeypatch.setattr(allocator.ctypes, "CDLL", missing)
    assert allocator.retain_freed_memory() is False
