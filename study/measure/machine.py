"""The one mapping from host facts to the engine's Machine.

``machine_from_host`` sets the Machine fields the host's facts decide: topology, the APIC
mode (the boot log's "APIC: Switched APIC routing to: ..."), PTI (the meltdown
vulnerability file), and for a KVM guest the paravirtual IPI and remote-flush facts
(kvm_send_ipi_mask(), kvm_flush_tlb_multi(): the boot log's "setup PV IPIs" and "KVM setup
pv remote TLB flush").  ``UNMODELLED_FACTS`` lists what the host tells us that the Machine
does not use; they are recorded in the measurement's manifest and in the calibrated
machine's ``source`` line.
"""

from __future__ import annotations

import dataclasses
import re

from study.engine.machine import Machine
from study.measure.host import HostFacts

# host facts recorded but not fields of Machine (descriptive only)
UNMODELLED_FACTS = ("hypervisor_vendor", "x2apic", "kernel_release", "cpu_model", "tsc_hz")

# the boot log's routing name -> Machine.apic_mode
_ROUTING = (("physical x2apic", "x2apic_phys"), ("cluster x2apic", "x2apic_cluster"),
            ("flat", "xapic"), ("physical flat", "xapic"))


def host_name(facts: HostFacts) -> str:
    """A machine name usable as a config option (``machine=<name>``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", facts.host).strip("_") or "host"


def apic_mode(facts: HostFacts, default: str) -> str:
    """The APIC mode the boot log names; without a readable log, x2APIC physical if the CPU
    has x2APIC (the kernel's choice on most hosts and every KVM guest seen here), else ``default``."""
    routing = (facts.apic_routing or "").lower()
    for text, mode in _ROUTING:
        if routing.startswith(text):
            return mode
    return "x2apic_phys" if facts.x2apic else default


def machine_from_host(facts: HostFacts, base: Machine | None = None, name: str | None = None) -> Machine:
    """A Machine with the host's topology and facts; costs come from ``base`` (priors until fitted)."""
    base = base or Machine()
    kvm = bool(facts.hypervisor)
    return dataclasses.replace(
        base, name=name or host_name(facts), calibrated=False, source="",
        sockets=facts.sockets, cores_per_socket=facts.cores_per_socket, smt=facts.smt,
        apic_mode=apic_mode(facts, base.apic_mode), pti=bool(facts.pti_on),
        virt="kvm" if kvm else "none",
        pv_send_ipi=kvm and bool(facts.pv_ipi), pv_tlb_flush=kvm and bool(facts.pv_tlb_flush),
        vcpu_preempted_share=base.vcpu_preempted_share if kvm else 0.0,
    ).validate()


def unmodelled(facts: HostFacts) -> dict:
    """The host facts the model does not use yet, by name."""
    return {k: getattr(facts, k) for k in UNMODELLED_FACTS}
