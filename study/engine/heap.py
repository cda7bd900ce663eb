"""Keep the C heap that numpy's temporaries come from, instead of handing it back each step.

A step allocates and frees dozens of temporaries of R x 8 bytes to C x R x 8 bytes (64 KiB
to a few MiB at the default replicates).  glibc's malloc serves those of 128 KiB and up with
a fresh mmap() each time, and gives the top of its heap back to the kernel (trims it) once
more than 128 KiB of it is free; its dynamic thresholds rise only after the first free of an
mmapped block, and only to that block's size.  Either way a freed temporary's pages go back
to the kernel and the next step faults them in again, zeroed: at the seed workload's 8192
replicates, 19,000 page faults in 30 rounds (16 with the thresholds below), and in a KVM
guest half the engine's time (benchmarks/engine.py: 13 against 24-25 M replicate-ops/s).

keep_heap() fixes both thresholds, once per process, at the largest glibc allows for its
own dynamic mmap threshold (32 MiB) and twice that for the trim (its dynamic rule): blocks
below 32 MiB come from the heap, and up to 64 MiB of freed heap stays mapped for reuse.  It
changes no result, only how memory is obtained.  Thresholds the user set in the environment
(MALLOC_*_ or GLIBC_TUNABLES) are theirs: then, and on a C library other than glibc, it
does nothing.
"""

from __future__ import annotations

import ctypes
import os

# glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20   # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
TRIM_THRESHOLD_BYTES = 64 << 20   # 2 x the mmap threshold, as glibc's dynamic rule sets it

_ENVIRONMENT = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")
_state: bool | None = None   # None: not tried yet; else whether the thresholds are ours


def keep_heap() -> bool:
    """Set glibc's trim and mmap thresholds for this process (first call only); whether they
    are set as described above."""
    global _state
    if _state is None:
        _state = _set_thresholds()
    return _state


def _set_thresholds() -> bool:
    if any(name in os.environ for name in _ENVIRONMENT):
        return False
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""   # "glibc 2.36"; not on musl or macOS
    except (ValueError, OSError):
        return False
    if not libc.startswith("glibc"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                   TRIM_THRESHOLD_BYTES))
