"""Freed memory kept for reuse: the frames of a x4 run, on the host.

glibc's malloc serves every block over its mmap threshold (at most 32 MiB) with a fresh
``mmap`` and gives it back with ``munmap`` when freed, so the next block of that size is faulted
in and zeroed by the kernel page by page again. A x4 frame is larger than that (one 3416x1920
float32 frame is 79 MB, a batch of two 157 MB), and each chunk allocates several: on the 2-core
machine, with the null network, 854x480 -> x4, 4 frames, this was 40 % of the one-thread loop's
CPU time (3.44 s against 2.05 s with mmap off) and 15 % of the pipeline's (4.0 s against 3.4 s).

:func:`keep_freed_memory` turns mmap off, raises the trim threshold and keeps every thread on
the one main heap (glibc gives each new thread an arena of its own, whose heaps are mapped and
unmapped again in the same way), so freed blocks stay in the heap and are reused: the effect of
``MALLOC_MMAP_MAX_=0 MALLOC_ARENA_MAX=1 MALLOC_TRIM_THRESHOLD_=...`` set before the process
starts, or of preloading jemalloc or tcmalloc, as PyTorch's CPU tuning guide suggests. With the
decode, post and encode threads of a run allocating frames, the arenas were most of it: null
network, 1920x1080 -> x4, 2 frames, the pipeline took 6.0-6.5 s (1.2-1.7 million page faults)
with the first two settings alone, 3.4 s with all three, the one-thread loop 3.1 s.

``adcvsr`` and the benchmark apply it at their start, before any thread exists (a thread that
already has an arena keeps it); the one configuration path applies it for library users whose
network runs on the CPU. The process's resident memory then stays near its peak while a file
runs and beyond (:func:`reusable_bytes` says how much of it is free for the next file).
"""

from __future__ import annotations

import ctypes
import sys
import threading

# mallopt's parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# Free memory at the heap's top kept rather than handed back (a C int: at most 2 GiB - 1).
_TRIM_THRESHOLD = 2**31 - 1

_lock = threading.Lock()
_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Make this process's malloc keep freed blocks for reuse (once; later calls only report).
    Returns whether it applies: False where the C library is not glibc."""
    with _lock:
        if "applied" not in _state:
            _state["applied"] = _apply()
        return _state["applied"]


# glibc's struct mallinfo2: ten size_t counters; fordblks is the free space in the heap.
_MALLINFO2 = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2.split()]


def reusable_bytes() -> int:
    """Bytes freed into the heap and kept there for reuse (0 where :func:`keep_freed_memory`
    does not apply): the kernel counts them as used, so a memory budget adds them back, and
    every file of a batch is planned with the same budget whatever ran before it."""
    if not _state.get("applied"):
        return 0
    try:
        info = ctypes.CDLL(None).mallinfo2
    except AttributeError:  # glibc before 2.33
        return 0
    info.restype = _Mallinfo2
    return int(info().fordblks)


def _apply() -> bool:
    if not sys.platform.startswith("linux"):
        return False  # glibc's malloc only (and ctypes.CDLL(None) is refused on Windows)
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (AttributeError where the C library is not glibc)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; all or nothing (a trim threshold alone changes nothing)
    return (
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
        and mallopt(_M_MMAP_MAX, 0) == 1
        and mallopt(_M_ARENA_MAX, 1) == 1
    )
