"""The published numbers of the seed (RFC cover letter, Haswell, bare metal, cycles per call).

These are the calibration *targets*: ``python -m study calibrate`` fits the machine's event
costs to them, and the seed table / report print them beside the model's own numbers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SeedCell:
    call: str        # "PROT_READ" or "PROT_READ|PROT_WRITE"
    threads: int
    policy: str      # "strict" (before, 5.19-rc4+) or "relaxed" (+patch)
    cycles: float

    @property
    def label(self) -> str:
        """The workload label whose latency this cell measures."""
        return "mprotect_ro" if self.call == "PROT_READ" else "mprotect_rw"


SEED_TABLE: tuple[SeedCell, ...] = (
    SeedCell("PROT_READ", 1, "strict", 2499),
    SeedCell("PROT_READ", 2, "strict", 4655),
    SeedCell("PROT_READ", 1, "relaxed", 2495),
    SeedCell("PROT_READ", 2, "relaxed", 4363),
    SeedCell("PROT_READ|PROT_WRITE", 1, "strict", 2529),
    SeedCell("PROT_READ|PROT_WRITE", 2, "strict", 4675),
    SeedCell("PROT_READ|PROT_WRITE", 1, "relaxed", 2496),
    SeedCell("PROT_READ|PROT_WRITE", 2, "relaxed", 2615),
)

# The seed's benchmark as a workload: one page, the loop of the cover letter, the second
# thread running in the mm on another core of the same socket and not touching the page.
SEED_WORKLOAD = dict(name="mprotect_toggle", pages=1, dirty_ratio=1.0, placement="core",
                     working_set=0, initiator_working_set=0, lazy_share=0.0, remote_access_rate=0.0,
                     remote_write_share=0.0)
SEED_MACHINE = "haswell_2s"
# The seed's "Before" column ran the RFC's own base: 5.19-rc4 plus MM_CP_TRY_CHANGE_WRITABLE
# for dirty exclusive anonymous pages (conf/kernel/rfc_base.yaml).
SEED_KERNEL = "rfc_base"
