"""The free cost parameters of a calibrated machine, with the ranges the evidence supports.

Each parameter is the cost of one named event.  Bounds and centres come from the published
numbers collected in docs/model.md "Published numbers" (kernel mailing-list measurements:
CR3 reload ~96 cycles, INVLPG ~100 ns, the dirty-bit walk > 500 cycles) where one exists,
otherwise from the physical sense of the event as noted.  Distance-dependent
costs are fitted for ``core`` (the seed's second thread ran on another core); ``smt`` and
``socket`` keep fixed ratios to it (SCALE), since the seed says nothing about them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prior:
    name: str      # dotted path in Costs, e.g. "ipi_deliver.core"
    centre: float
    low: float
    high: float
    why: str


PRIORS: tuple[Prior, ...] = (
    Prior("syscall_mprotect", 2000, 1200, 2600,
          "a mprotect() that needs no flush: ~1500 cycles in a KVM guest; bare metal Haswell, "
          "5.19 with mitigations, same order"),
    Prior("pte_update", 30, 5, 100, "one PTE read-modify-write under the PTL: tens of cycles"),
    Prior("pte_mkwrite_check", 30, 0, 100, "can_change_pte_writable(): a few loads and branches"),
    Prior("cpumask_scan", 30, 0, 150, "looking for another CPU in mm_cpumask: a few cache lines"),
    Prior("invlpg", 260, 150, 400, "one INVLPG ~100 ns / ~260 cycles"),
    Prior("flush_full", 96, 60, 200, "full flush by CR3 reload ~96 cycles"),
    Prior("tlb_gen_xfer.core", 120, 60, 250,
          "a relaxed flush with a second thread present costs ~120 cycles more: the tlb_gen line"),
    Prior("ipi_send", 150, 50, 400, "x2APIC ICR write (an MSR write) per target"),
    Prior("ipi_deliver.core", 900, 300, 1500, "part of the ~2150-cycle shootdown to a busy core"),
    Prior("ipi_ack.core", 150, 50, 400, "the csd unlock line travelling back: one cache-line transfer"),
    Prior("irq_entry_exit", 600, 200, 1000, "IRQ entry/exit with mitigations; part of the ~2150-cycle shootdown"),
)

# smt and socket values as multiples of the fitted core value (not identifiable from the seed)
SCALE = {"smt": 0.4, "socket": 2.5}
