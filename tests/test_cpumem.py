"""Freed memory kept for reuse on the CPU: frame-sized blocks are not faulted in again."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# In a fresh process: four rounds of a 64 MiB block allocated, written and freed, before and
# after the switch, and after it in a new thread, counting the minor page faults each set of
# rounds takes.
_PROBE = textwrap.dedent(
    """
    import ctypes, resource, threading
    from adcvsr_cli.engine.cpumem import keep_freed_memory, reusable_bytes

    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    SIZE = 64 << 20

    def rounds(n=4):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(n):
            p = libc.malloc(SIZE)
            ctypes.memset(p, 1, SIZE)
            libc.free(p)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    def in_thread():  # a thread started after the switch (the pipeline's are)
        out = []
        t = threading.Thread(target=lambda: out.extend([rounds(1), rounds()]))
        t.start()
        t.join()
        return out[1]

    off = rounds()
    applied = keep_freed_memory()
    rounds(1)  # the first block after the switch is new heap
    def counted_free():  # a freed 256 MiB block is counted as free for the next plan
        block = libc.malloc(256 << 20)
        ctypes.memset(block, 1, 256 << 20)
        libc.free(block)
        return reusable_bytes()

    print(applied, keep_freed_memory(), off, rounds(), in_thread(), counted_free())
    """
)


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc"
)
def test_freed_frame_sized_blocks_are_reused_not_faulted_in_again():
    r = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert r.returncode == 0, r.stderr
    applied, again, off, on, thread, freed = r.stdout.split()
    assert applied == again == "True"
    pages = (64 << 20) // 4096
    assert int(off) >= 3 * pages  # each round faulted its block in afresh
    assert int(on) < pages // 4  # reused: almost no new pages over four rounds
    assert int(thread) < pages // 4  # in another thread too (one arena: the same heap)
    assert int(freed) >= 256 << 20  # and counted as free for the next file's memory budget
