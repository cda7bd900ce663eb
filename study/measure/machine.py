"""The one mapping from host facts to the engine's Machine.

``machine_from_host`` sets only the Machine fields that exist today (topology, the IPI
send mode).  ``UNMODELLED_FACTS`` lists what the host tells us that the Machine cannot
hold yet (PTI, virtualization, paravirtual remote flush and IPIs, APIC routing): they are
recorded in the measurement's manifest and in the calibrated machine's ``source`` line,
so that once the Machine grows those fields this function is the one place to extend.
"""

from __future__ import annotations

import dataclasses
import re

from study.engine.machine import Machine
from study.measure.host import HostFacts

# host facts recorded but not (yet) fields of Machine; extend machine_from_host when they are
UNMODELLED_FACTS = ("pti_on", "hypervisor", "hypervisor_vendor", "pv_tlb_flush", "pv_ipi", "apic_routing",
                    "x2apic", "kernel_release", "cpu_model", "tsc_hz")


def host_name(facts: HostFacts) -> str:
    """A machine name usable as a config option (``machine=<name>``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", facts.host).strip("_") or "host"


def machine_from_host(facts: HostFacts, base: Machine | None = None, name: str | None = None) -> Machine:
    """A Machine with the host's topology; costs come from ``base`` (priors until fitted).

    ipi_mode: x2APIC physical routing writes the ICR once per target (``sequential``);
    cluster mode and the all-but-self shorthand send one write for many targets, which the
    engine's ``broadcast`` approximates.  A paravirtual IPI (kvm_send_ipi_mask, one
    hypercall for the whole mask) is also one send for the mask.
    """
    base = base or Machine()
    if facts.pv_ipi or (facts.apic_routing or "").startswith("cluster"):
        ipi_mode = "broadcast"
    else:
        ipi_mode = "sequential"
    return dataclasses.replace(base, name=name or host_name(facts), calibrated=False, source="",
                               sockets=facts.sockets, cores_per_socket=facts.cores_per_socket, smt=facts.smt,
                               ipi_mode=ipi_mode).validate()


def unmodelled(facts: HostFacts) -> dict:
    """The host facts the model does not use yet, by name."""
    return {k: getattr(facts, k) for k in UNMODELLED_FACTS}
