"""Operation codes of one engine step and the flush types a step reports."""

OP_NOP = 0
OP_MPROTECT = 1      # arg: 1 = PROT_READ|PROT_WRITE, 0 = PROT_READ
OP_ACCESS = 2        # arg: 1 = write, 0 = read, 2 = the write retried in the same exception after
                     # handle_userfault() (ACCESS_RETRY); lo = the page
ACCESS_RETRY = 2
OP_UFFD_WP = 3       # arg: 1 = protect (RW->RO + uffd-wp), 0 = unprotect, 2 = unprotect with the
                     # write-likely hint (UFFD_FLAGS_WRITE_LIKELY, RFC patches 1-2)
OP_MADV_FREE = 4     # clears Dirty and Accessed, keeps RW
UFFD_PROTECT, UFFD_UNPROTECT, UFFD_UNPROTECT_WRITE_LIKELY = 1, 0, 2
OP_SWITCH_MM = 5     # arg: 0 = the CPU switches the mm back in (leaves lazy), 1 = goes lazy

FLUSH_NONE = 0
FLUSH_RELAXED = 1
FLUSH_STRICT = 2

# Event counters, summed per replicate over the whole run: name -> (unit, what it counts).
COUNTERS: dict[str, tuple[str, str]] = {
    "ipis": ("IPIs", "IPIs sent"),
    "shootdowns": ("flushes", "strict flushes that sent at least one IPI"),
    "strict_flushes": ("flushes", "flush_tlb_mm_range() calls on the strict path"),
    "relaxed_flushes": ("flushes", "relaxed flushes (++tlb_gen, local flush, no IPI)"),
    "local_partial": ("flushes", "INVLPG flushes on the initiator"),
    "local_full": ("flushes", "full flushes on the acting CPU (incl. context switch, spurious fix-up)"),
    "switch_full": ("flushes", "full flushes in switch_mm_irqs_off() (a lazy CPU waking, a thread back on its "
                               "CPU behind mm->tlb_gen); also in local_full"),
    "flush_multi": ("calls", "strict flushes with another CPU in mm_cpumask: flush_tlb_multi() called (whether or "
                             "not an IPI goes out)"),
    "remote_partial": ("flushes", "INVLPG flushes in a remote flush_tlb_func"),
    "remote_full": ("flushes", "full flushes in a remote flush_tlb_func"),
    "tlb_hits": ("accesses", "TLB hits on the range's pages"),
    "tlb_misses": ("page walks", "misses on the range's pages and working-set refills"),
    "ws_refills": ("refills", "a thread's refill of its hot set after a full flush of its CPU"),
    "dirty_walks": ("walks", "hardware walks that set a PTE's Dirty bit"),
    "spurious_faults": ("faults", "faults whose PTE already allowed the access (a stale entry)"),
    "reuse_faults": ("faults", "write faults on a read-only PTE of a writable VMA: do_wp_page -> wp_page_reuse"),
    "prot_faults": ("faults", "true protection faults (SIGSEGV)"),
    "uffd_faults": ("faults", "uffd-wp faults delivered to the monitor"),
    "violations": ("writes", "writes that completed while the PTE was read-only or clean"),
    "tlb_gen_xfers": ("cache-line transfers", "mm->tlb_gen cache-line transfers"),
    "ipi_writes": ("ICR writes", "ICR writes (or PV send hypercalls) of the initiators' sends"),
    "vm_exits": ("VM exits", "virt=kvm: sends that trapped to the host"),
    "pv_flush_deferred": ("vCPUs", "preempted vCPUs flagged KVM_VCPU_FLUSH_TLB instead of an IPI"),
    "off_cpu_skipped": ("CPUs", "mm_cpumask CPUs running another mm (thread off its CPU): no IPI"),
    "invlpg": ("pages", "pages invalidated by INVLPG in partial flushes (local and remote)"),
    "invpcid": ("pages", "pages invalidated by INVPCID of the user ASID (PTI)"),
}
