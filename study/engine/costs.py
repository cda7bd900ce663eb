"""Per-event costs with jitter, as lookup tables the engines share.

Every charged event costs ``rint(base * F[u])`` cycles, where ``u`` is a 16-bit random
draw from the event's slot and ``F`` a table of 65536 lognormal quantiles with mean 1.
Both engines (vectorized and scalar) use the same tables and the same draws, so they agree
to the cycle; a table lookup is also far cheaper than drawing a lognormal per event.
"""

from __future__ import annotations

from functools import lru_cache
from statistics import NormalDist

import numpy as np

from study.engine.machine import Machine
from study.errors import ConfigError

N_LEVELS = 1 << 16

# Fixed random slots of one step; per-target slots follow (see slot_count()).
SLOT_SYSCALL = 0     # syscall entry/exit and the call's fixed work
SLOT_PTE = 1         # change_pte_range() over the range
SLOT_TLBGEN = 2      # ++mm->tlb_gen: moving the cache line to the initiator
SLOT_SEND = 3        # mm_cpumask scan and IPI sends
SLOT_LOCAL = 4       # the initiator's own flush_tlb_func
SLOT_REFILL = 5      # working-set refill after a full flush
SLOT_ACCESS = 6      # TLB hit or page walk
SLOT_DIRTY = 7       # the hardware dirty-bit walk
SLOT_FAULT = 8       # page-fault entry/exit
SLOT_FIXUP = 9       # spurious-fault fix-up: full local flush and reading mm->tlb_gen
SLOT_RETRY = 10      # the walk of a retried access after a spurious fault
SLOT_SWITCH = 11     # switch_mm_irqs_off() and any flush it needs
SLOT_EXTRA = 12      # SIGSEGV delivery
N_FIXED_SLOTS = 13


def slot_count(n_cpus: int) -> int:
    """Slots per step: the fixed ones, then per target CPU an IPI-delivery and a handler slot."""
    return N_FIXED_SLOTS + 2 * n_cpus


@lru_cache(maxsize=None)
def _normal_quantiles() -> np.ndarray:
    inv_cdf = NormalDist().inv_cdf
    return np.array([inv_cdf((i + 0.5) / N_LEVELS) for i in range(N_LEVELS)])


@lru_cache(maxsize=16)
def jitter_table(sigma: float) -> np.ndarray:
    """Lognormal factors with mean 1, one per 16-bit draw (midpoint quantiles); read-only."""
    table = np.ones(N_LEVELS) if sigma == 0.0 else np.exp(sigma * _normal_quantiles() - 0.5 * sigma * sigma)
    table.flags.writeable = False
    return table


class CostTables:
    """The machine's costs as float arrays the engines index directly."""

    def __init__(self, machine: Machine):
        c = machine.costs
        # Costs are rounded to int64 cycles: a base cost that is not finite, or so large that a
        # jittered draw loses integer precision in float64, would become garbage silently.
        for name, value in vars(c).items():
            base = np.asarray(value.table() if hasattr(value, "table") else value, np.float64)
            if not (np.all(np.isfinite(base)) and np.all(base >= 0) and np.all(base < 2.0 ** 40)):
                raise ConfigError(f"machine.costs.{name}", f"must be finite cycles in [0, 2**40), got {value!r}")
        self.F = jitter_table(machine.jitter_sigma)
        self.F_ipi = jitter_table(machine.ipi_jitter_sigma)
        self.tlb_gen_xfer = c.tlb_gen_xfer.table()
        # delivery and acknowledgement travel the same path and share one draw
        self.ipi_deliver_ack = c.ipi_deliver.table() + c.ipi_ack.table()
        self.c = c
        self.ceiling = machine.tlb_single_page_flush_ceiling
        self.sequential = machine.ipi_mode == "sequential"
        self.rechecks = machine.dirty_walk_rechecks_pte


def draw_slots(rng: np.random.Generator, replicates: int, n_cpus: int) -> np.ndarray:
    """One step's random draws: uint16 [slot_count(n_cpus), replicates] (slot-major)."""
    # Raw 64-bit words cut into four 16-bit draws: every bit of a word is uniform, and this
    # is twice as fast as a bounded integer draw.
    n = replicates * slot_count(n_cpus)
    words = rng.bit_generator.random_raw((n + 3) // 4)
    return words.view(np.uint16)[:n].reshape(slot_count(n_cpus), replicates)
