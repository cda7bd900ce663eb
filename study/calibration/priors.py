"""The cost parameters calibration fits, each with the range its evidence supports and that source.

Each parameter is the cost of one named event (cycles).  A prior is a centre and a range;
the fit works in log space, so a prior says "within a factor of ..." whatever the units.
Sources are named in words: the kernel's own comments, the RFC cover letter (July 2022,
"mm: relaxed TLB flushes and other optimizations", Haswell, bare metal), vendor manuals, or
the physical sense of the event when no number is published ("prior only").

Distance-dependent costs are fitted for ``core`` (the seed's second thread ran on another
core of the same socket); ``smt`` and ``socket`` keep fixed ratios to it (SCALE): the seed
has no cell at those distances, so nothing could pin them, and stating fixed ratios keeps
the fit from pretending otherwise.  The ratios are priors: a sibling shares L1/L2 (about
0.4x a cross-core transfer), another socket crosses QPI (about 2.5x).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prior:
    name: str      # dotted path in Costs, e.g. "ipi_deliver.core"
    centre: float
    low: float
    high: float
    source: str


PRIORS: tuple[Prior, ...] = (
    Prior("syscall_mprotect", 2000, 1200, 2600,
          "RFC cover letter: a 1-thread mprotect() that needs no IPI costs ~2500 cycles in all; "
          "the syscall's own share (entry/exit, mmap_lock, VMA walk, mmu_gather) is most of it"),
    Prior("pte_update", 30, 5, 100, "prior only: one PTE read-modify-write under the page-table lock"),
    Prior("pte_mkwrite_check", 30, 1, 100, "prior only: can_change_pte_writable(), a few loads and branches"),
    Prior("cpumask_scan", 30, 1, 150, "prior only: cpumask_any_but(mm_cpumask) and flush_tlb_info setup"),
    Prior("invlpg", 260, 150, 400,
          "arch/x86/mm/tlb.c, tlb_single_page_flush_ceiling: 'each single flush is about 100 ns'"),
    Prior("flush_full", 96, 60, 200, "prior only: a CR3 reload, ~100 cycles (the project's earlier assumption; not measured here)"),
    Prior("tlb_gen_xfer.core", 120, 60, 250,
          "RFC cover letter: a relaxed flush with a second thread present costs ~120 cycles more "
          "(the mm->tlb_gen line moving between cores)"),
    Prior("remote_line.core", 120, 60, 250,
          "the same kind of cross-core cache-line transfer as the tlb_gen line (is_lazy read, "
          "csd lock, llist_add)"),
    Prior("ipi_send", 150, 50, 400, "prior only: one x2APIC ICR write (WRMSR), ~50-150 ns"),
    Prior("ipi_deliver.core", 900, 300, 1500,
          "RFC cover letter: the 2-thread strict calls cost ~2150 cycles more than 1-thread; "
          "delivery is the largest share"),
    Prior("ipi_ack.core", 150, 50, 400, "prior only: the csd unlock line travelling back, one transfer"),
    Prior("irq_entry_exit", 600, 200, 1000,
          "RFC cover letter: part of the ~2150-cycle shootdown; IRQ entry/exit with mitigations"),
    Prior("invpcid", 200, 100, 400,
          "PTI (machine.pti): INVPCID of one user address, same order as INVLPG (prior only)"),
    Prior("cr3_switch", 150, 50, 400,
          "PTI: one CR3 write with PCID and NOFLUSH on kernel entry or exit (prior only; "
          "the KPTI merge measured a few hundred cycles per syscall round trip)"),
    Prior("user_asid_flush", 100, 50, 250,
          "PTI: the exit's CR3 write that flushes the user ASID after a full flush, ~ a CR3 reload"),
    Prior("page_walk", 40, 20, 200,
          "prior only: an STLB miss whose paging-structure entries hit the caches, tens of "
          "cycles; hundreds when they miss (the refill of a working set costs this per entry)"),
    Prior("fault_entry_exit", 1200, 600, 3000, "prior only: page-fault exception entry/exit and handle_mm_fault"),
    Prior("dirty_walk", 550, 500, 1000, "prior only: a locked page walk that sets Dirty, over 500 cycles (the figure quoted in the RFC's discussion; unconfirmed)"),
)

# smt and socket values as multiples of the fitted core value (not identifiable from the seed)
SCALE = {"smt": 0.4, "socket": 2.5}
