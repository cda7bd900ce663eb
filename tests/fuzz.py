"""Random interleavings of every engine operation, for the equivalence and safety tests."""

from __future__ import annotations

import numpy as np

from study.engine.costs import draw_slots
from study.engine.ops import ACCESS_RETRY, OP_ACCESS, OP_MADV_FREE, OP_MPROTECT, OP_SWITCH_MM, OP_UFFD_WP


def random_ops(rng: np.random.Generator, R: int, C: int, P: int, steps: int, lazy_ops: bool = True,
               lazy=None):
    """Yield (kind, cpu, lo, n, arg, u) per step; each replicate does its own random thing.

    A lazy CPU runs no user code: whatever it was drawn to do, it first switches the mm
    back in (switch_mm_irqs_off), which is the op it does this step.
    """
    is_lazy = np.zeros((R, C), bool) if lazy is None else np.broadcast_to(np.asarray(lazy, bool), (R, C)).copy()
    ar = np.arange(R)
    kinds = np.array([OP_MPROTECT, OP_ACCESS, OP_ACCESS, OP_ACCESS, OP_UFFD_WP, OP_MADV_FREE]
                     + ([OP_SWITCH_MM] if lazy_ops else []), np.int8)
    for _ in range(steps):
        kind = kinds[rng.integers(0, kinds.size, R)]
        cpu = rng.integers(0, C, R)
        lo = rng.integers(0, P, R)
        n = rng.integers(1, P + 1, R)
        n = np.minimum(n, P - lo)
        # accesses are to one page; mm-wide calls start at lo
        n = np.where(kind == OP_ACCESS, 1, n)
        arg = rng.integers(0, 2, R).astype(np.int8)
        # a uffd unprotect carries the write-likely hint (arg 2) half of the time
        hinted = rng.integers(0, 2, R).astype(bool)
        arg = np.where((kind == OP_UFFD_WP) & (arg == 0) & hinted, 2, arg).astype(np.int8)
        # a sixth of the accesses are a write retried after handle_userfault() returned
        # VM_FAULT_RETRY (the monitor resolved it)
        retried = (kind == OP_ACCESS) & (rng.integers(0, 6, R) == 0)
        arg = np.where(retried, ACCESS_RETRY, arg).astype(np.int8)
        # a switch_mm never puts the caller of an mm-wide call to sleep mid-call: CPU 0
        # stays awake so that some CPU always runs the mm
        cpu = np.where((kind == OP_SWITCH_MM) & (cpu == 0), 1 % C, cpu)
        asleep = is_lazy[ar, cpu]
        switch = kind == OP_SWITCH_MM
        kind = np.where(asleep & ~switch, OP_SWITCH_MM, kind).astype(np.int8)
        arg = np.where(asleep & ~switch, 0, arg).astype(np.int8)
        switch = kind == OP_SWITCH_MM
        is_lazy[ar[switch], cpu[switch]] = arg[switch].astype(bool)
        yield kind, cpu, lo, n, arg, draw_slots(rng, R, C)


def run_random(engine, rng, steps, lazy_ops=True, lazy=None):
    """Drive ``engine`` through random interleavings; return the per-step latencies."""
    lats = []
    for kind, cpu, lo, n, arg, u in random_ops(rng, engine.R, engine.C, engine.P, steps, lazy_ops, lazy):
        lat, flush, pending = engine.step(kind, cpu, lo, n, arg, u)
        lats.append((lat.copy(), flush.copy(), pending.copy()))
    return lats
