"""Facts about the running host: topology, CPU, kernel, PTI, virtualization, APIC, load.

Everything is read from files any user can read (``/proc``, ``/sys``); ``dmesg`` is tried
and its absence is recorded, never an error.  ``placement_host_cpus`` maps the engine's
placement names (``smt``, ``core``, ``socket``) onto the host's real CPU numbers in the
same order ``study.engine.machine.placement_cpus`` uses for a modelled machine.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from study.errors import ConfigError

SYS_CPU = Path("/sys/devices/system/cpu")


@dataclass(frozen=True)
class HostCpu:
    cpu: int        # the kernel's CPU number (what sched_setaffinity takes)
    socket: int     # physical_package_id
    core: int       # core_id within the package
    thread: int     # index of this CPU among its core's SMT siblings


@dataclass
class HostFacts:
    host: str
    kernel_release: str
    cpu_model: str
    cpu_flags: list[str]
    cpus: list[HostCpu]
    sockets: int
    cores_per_socket: int
    smt: int
    pti: str                   # /sys/.../vulnerabilities/meltdown, verbatim
    pti_on: bool
    hypervisor: bool           # the `hypervisor` CPUID flag
    hypervisor_vendor: str     # from dmesg ("KVM", ...), "" if unreadable
    x2apic: bool               # the x2apic CPU flag
    dmesg_readable: bool
    # facts only the boot log says; None when dmesg is unreadable
    pv_tlb_flush: bool | None = None      # "KVM setup pv remote TLB flush" (kvm_flush_tlb_multi)
    pv_ipi: bool | None = None            # "setup PV IPIs" (kvm_send_ipi_mask)
    apic_routing: str | None = None       # "physical x2apic", "cluster x2apic", "flat", ...
    tsc_hz: float | None = None
    cpu_mhz: float | None = None
    loadavg: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["cpus"] = [asdict(c) for c in self.cpus]
        return data


def _read(path: Path | str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def online_cpus() -> list[int]:
    """The online CPUs, from /sys/devices/system/cpu/online (e.g. ``0-3,6``)."""
    text = _read(SYS_CPU / "online")
    if not text:
        return sorted(os.sched_getaffinity(0))
    cpus = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def topology(cpus: list[int] | None = None) -> list[HostCpu]:
    """Socket, core and SMT index of each online CPU, from .../cpuN/topology."""
    out = []
    siblings_seen: dict[tuple[int, int], list[int]] = {}
    for cpu in cpus if cpus is not None else online_cpus():
        top = SYS_CPU / f"cpu{cpu}" / "topology"
        sock = int(_read(top / "physical_package_id", "0") or 0)
        core = int(_read(top / "core_id", str(cpu)) or cpu)
        siblings_seen.setdefault((sock, core), []).append(cpu)
        out.append(HostCpu(cpu, sock, core, len(siblings_seen[(sock, core)]) - 1))
    return out


def cpuinfo() -> tuple[str, list[str], float | None]:
    text = _read("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)$", text, re.M)
    return (model.group(1).strip() if model else platform.processor() or "unknown",
            flags.group(1).split() if flags else [], float(mhz.group(1)) if mhz else None)


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _dmesg() -> str | None:
    try:
        res = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout if res.returncode == 0 and res.stdout else None


def host_facts(tsc_hz: float | None = None) -> HostFacts:
    cpus = topology()
    model, flags, mhz = cpuinfo()
    sockets = len({c.socket for c in cpus}) or 1
    cores = len({(c.socket, c.core) for c in cpus}) or 1
    smt = max(c.thread for c in cpus) + 1 if cpus else 1
    pti = _read(SYS_CPU / "vulnerabilities" / "meltdown", "unknown")
    log = _dmesg()
    facts = HostFacts(
        host=socket.gethostname().split(".")[0] or "host",
        kernel_release=platform.release(),
        cpu_model=model, cpu_flags=flags, cpus=cpus,
        sockets=sockets, cores_per_socket=max(1, cores // sockets), smt=smt,
        pti=pti, pti_on="PTI" in pti,
        hypervisor="hypervisor" in flags,
        hypervisor_vendor="", x2apic="x2apic" in flags,
        dmesg_readable=log is not None, tsc_hz=tsc_hz, cpu_mhz=mhz, loadavg=loadavg(),
    )
    if log is not None:
        vendor = re.search(r"Hypervisor detected: (\S+)", log)
        facts.hypervisor_vendor = vendor.group(1) if vendor else ""
        facts.pv_tlb_flush = "pv remote TLB flush" in log
        facts.pv_ipi = "setup PV IPIs" in log
        routing = re.findall(r"Switched APIC routing to:? (.+)", log)
        facts.apic_routing = routing[-1].strip() if routing else None
    return facts


PLACEMENTS = ("smt", "core", "socket")


def placement_host_cpus(cpus: list[HostCpu], threads: int, placement: str) -> list[int]:
    order, ok, shape = _placement_order(cpus, threads, placement)
    if not ok:
        raise ConfigError("measure.placement", f"{placement!r} is impossible on this host ({shape}); "
                                               f"possible: {', '.join(possible_placements(cpus)) or 'none'}")
    return order[:threads]


def _placement_order(cpus: list[HostCpu], threads: int, placement: str):
    """The host CPU of each thread, thread 0 first, for an engine placement name.

    ``smt``: thread 1 on a hyper-thread sibling of thread 0 (siblings filled first);
    ``core``: every thread on its own physical core of one socket; ``socket``: threads
    alternate sockets.  The same orders as study.engine.machine.placement_cpus; a
    placement the host cannot give is a ConfigError, never a silent substitute.
    """
    if placement not in PLACEMENTS:
        raise ConfigError("measure.placement", f"must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    if not 1 <= threads <= len(cpus):
        raise ConfigError("measure.threads", f"must be between 1 and this host's {len(cpus)} online CPUs, got {threads}")
    if threads == 1:
        return [cpus[0].cpu], True, ""
    S = sorted({c.socket for c in cpus})
    by_core: dict[tuple[int, int], list[HostCpu]] = {}
    for c in cpus:
        by_core.setdefault((c.socket, c.core), []).append(c)
    T = max(len(v) for v in by_core.values())

    def at(s, i, t):   # the t-th SMT thread of the i-th core of socket s, if any
        keys = sorted(k for k in by_core if k[0] == s)
        return by_core[keys[i]][t].cpu if i < len(keys) and t < len(by_core[keys[i]]) else None

    C = max(len([k for k in by_core if k[0] == s]) for s in S)
    if placement == "smt":
        order = [at(s, c, t) for s in S for c in range(C) for t in range(T)]
    elif placement == "core":
        order = [at(s, c, t) for t in range(T) for s in S for c in range(C)]
    else:
        order = [at(s, c, t) for t in range(T) for c in range(C) for s in S]
    order = [cpu for cpu in order if cpu is not None]
    first, second = (next(c for c in cpus if c.cpu == order[i]) for i in (0, 1))
    # the distance class of thread 1 from thread 0 is what the placement promises
    shape = f"{len(S)} socket(s), {len(by_core)} core(s), {T} thread(s) per core"
    ok = {"smt": (first.socket, first.core) == (second.socket, second.core),
          "core": first.socket == second.socket and first.core != second.core,
          "socket": first.socket != second.socket}[placement]
    return order, ok, shape


def possible_placements(cpus: list[HostCpu]) -> list[str]:
    """The placements of two threads this host can give."""
    if len(cpus) < 2:
        return []
    return [name for name in PLACEMENTS if _placement_order(cpus, 2, name)[1]]
