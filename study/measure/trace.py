"""The kernel's own account of a measured cell: its TLB flushes and user page faults, event by event.

When tracefs is usable (root, mounted or mountable, the events exist), ``measure`` records two
tracepoints during the timed rounds of every trial, in a tracefs instance of its own
(``instances/study-<pid>``, removed at the end; the global buffer is never touched):

* ``tlb:tlb_flush`` (arch/x86/mm/tlb.c; fields ``pages``, -1 = a full flush, and ``reason``):
  0 ``TLB_FLUSH_ON_TASK_SWITCH`` (switch_mm_irqs_off() loading the mm: pages -1 when its
  ASID's generation was behind, a full flush, 0 when it was current), 1
  ``TLB_REMOTE_SHOOTDOWN`` (flush_tlb_func() run for another CPU's request), 2
  ``TLB_LOCAL_SHOOTDOWN`` / 3 ``TLB_LOCAL_MM_SHOOTDOWN`` (flush_tlb_func() on the initiating
  CPU, without / with an mm), 4 ``TLB_REMOTE_SEND_IPI`` (native_flush_tlb_multi(): once per
  call that looks beyond this CPU, whether or not an IPI goes out: a lazy or switched-away
  CPU is still in mm_cpumask), 5 ``TLB_REMOTE_WRONG_CPU`` (an IPI for an mm that is no
  longer loaded there; pages 0).  flush_tlb_func() also traces pages 0 when the CPU was
  already up to date (``goto done``);
* ``exceptions:page_fault_user`` (address, ip, error_code): kept by its error code's
  write bit (bit 1) and present bit (bit 0: a protection fault, else not present).

**Which events are the benchmark's.**  The instance's pid filter (``set_event_pid``, with
``options/event-fork`` so that every thread of the benchmark joins it as it is created; the
benchmark writes its own pid before it starts a thread).  The kernel decides it per CPU at
each context switch, from the task switched TO (the sched_switch probes of
kernel/trace/trace_events.c): an event is kept while one of the benchmark's threads is, or
is being switched in as, the CPU's current task.  That keeps every event the benchmark's
threads take: their syscalls' flushes and sends, their faults, the shootdowns their CPUs
receive while they run (in interrupt context on the target CPU), and the switch-in flush
(reason 0) when a thread comes back to its CPU -- after a lazy sleep or after another
process ran there -- which switch_mm_irqs_off() emits before the switch completes, so its
``common_pid`` is the OUTGOING task's (0 after idle).  A filter on ``common_pid`` would
drop exactly those and keep instead the switch-out flush (the next process's, not ours);
a filter on CPUs alone would keep other processes' flushes.  What it drops: other
processes' events, and an IPI that reaches a benchmark CPU after the thread left it.  A
reason-5 event kept here is thus another mm's late IPI reaching a CPU while a benchmark
thread runs there (what the benchmark suffers, not what it causes).

**The trial structure.**  ``tracing_cpumask`` is the cell's CPUs; the benchmark turns
``tracing_on`` on and writes ``study: trial T begin`` / ``end`` markers around the timed
rounds of each recorded trial (never setup or warm-up), then waits while this module drains
the trial's trace (``trace_pipe``, consumed: the buffer is empty again) and reads the ring
buffer's lost counts (``per_cpu/cpuN/stats``: overrun, commit overrun, dropped events, the
change since the last trial).  Only events between the trial's markers count; they are
counted after the benchmark has exited.

**Drops.**  ``options/overwrite`` is off (a full buffer drops new events and counts them,
instead of overwriting old ones), the buffer is sized for one trial with a wide margin
(``buffer_kb``), and a trial with any lost event (or a missing marker) is flagged: its
event rates are NaN (left out of the cell's means) and ``trace_lost_events`` says how many.

``STUDY_TRACEFS`` points at another tracefs directory (tests: an empty directory is "not
mounted"); only the default path is ever mounted.
"""

from __future__ import annotations

import ctypes
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from study.results.metrics import TRACE_KINDS, TRACE_ROLES, trace_metric

DEFAULT_TRACEFS = Path("/sys/kernel/tracing")
ENV = "STUDY_TRACEFS"
EVENTS = ("tlb/tlb_flush", "exceptions/page_fault_user")
ROLES = tuple(TRACE_ROLES)
# event kind -> what it is: declared with the metrics (study/results/metrics.py)
KINDS = TRACE_KINDS
ULONG_MAX = (1 << 64) - 1
MARKER = re.compile(r"study: trial (-?\d+) (begin|end)")
LOST = re.compile(r"^\s*CPU:(\d+) \[LOST (\d+) EVENTS\]")
FLUSH = re.compile(r"pages:(-?\d+) reason:.*\((-?\d+)\)\s*$")
FAULT = re.compile(r"error_code=(?:0x)?([0-9a-fA-F]+)")
BYTES_PER_EVENT = 40        # a ring-buffer entry of either event, header included (about 32-40)
EVENTS_PER_ROUND = 64       # a generous bound per CPU: a few flushes and sends per call, faults
MIN_BUFFER_KB, MAX_BUFFER_KB = 1024, 65536


def tracefs_path() -> Path:
    return Path(os.environ.get(ENV) or DEFAULT_TRACEFS)


@dataclass
class Availability:
    usable: bool
    why: str           # "" when usable; else why not, in one line
    path: str


def _mount(path: Path) -> str:
    """Mount tracefs at ``path`` (mount(2) through libc); "" on success, else the error."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mount(b"nodev", str(path).encode(), b"tracefs", ctypes.c_ulong(0), None) == 0:
            return ""
        return os.strerror(ctypes.get_errno())
    except (OSError, AttributeError) as err:
        return str(err)


def availability(path: Path | None = None) -> Availability:
    """Whether the tracepoints can be recorded here, and if not which of: not root, tracefs
    not mounted (and mounting failed), an event missing."""
    path = Path(path) if path is not None else tracefs_path()
    if os.geteuid() != 0:
        return Availability(False, "not root (recording tracepoints needs root)", str(path))
    if not (path / "instances").is_dir():
        if path == DEFAULT_TRACEFS:
            err = _mount(path) if path.is_dir() else "no such directory"
            if err or not (path / "instances").is_dir():
                return Availability(False, f"tracefs is not mounted at {path} and mounting it failed "
                                           f"({err or 'no instances directory after mounting'})", str(path))
        else:
            return Availability(False, f"tracefs is not mounted at {path} (${ENV}; only {DEFAULT_TRACEFS} "
                                       f"is mounted when missing)", str(path))
    for event in EVENTS:
        if not (path / "events" / event / "format").is_file():
            system, name = event.split("/")
            return Availability(False, f"the event {system}:{name} is missing from {path}/events (a kernel "
                                       f"without it)", str(path))
    return Availability(True, "", str(path))


def buffer_kb(rounds: int) -> int:
    """The per-CPU buffer for one trial of ``rounds`` rounds, with a wide margin."""
    need = rounds * EVENTS_PER_ROUND * BYTES_PER_EVENT // 1024
    return int(min(max(need, MIN_BUFFER_KB), MAX_BUFFER_KB))


def cpumask_hex(cpus) -> str:
    """``tracing_cpumask``'s format: hex, 32-bit groups separated by commas."""
    mask = 0
    for cpu in cpus:
        mask |= 1 << int(cpu)
    digits = f"{mask:x}"
    groups = []
    while digits:
        groups.insert(0, digits[-8:])
        digits = digits[:-8]
    return ",".join(groups) or "0"


def _write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _stats_lost(text: str) -> int:
    """Events a CPU's ring buffer lost: overrun (overwritten), commit overrun, dropped."""
    lost = 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("overrun", "commit overrun", "dropped events"):
            try:
                lost += int(value.strip())
            except ValueError:
                pass
    return lost


class TraceError(RuntimeError):
    """tracefs refused a step of the instance's setup."""


class Session:
    """A tracefs instance of this process (``instances/study-<pid>``): set up on entry,
    removed on exit; one cell at a time (``start``), one trial at a time (``collect``)."""

    def __init__(self, root: Path, kb: int):
        self.root = Path(root)
        self.dir = self.root / "instances" / f"study-{os.getpid()}"
        self.kb = int(kb)
        self.clock = ""
        self._lost: dict[int, int] = {}

    def facts(self) -> dict:
        return {"instance": self.dir.name, "buffer_size_kb": self.kb, "clock": self.clock,
                "events": ["tlb:tlb_flush", "exceptions:page_fault_user"],
                "filter": "set_event_pid = the benchmark's pid, options/event-fork = 1 (its threads); "
                          "tracing_cpumask = the cell's CPUs",
                "overwrite": False}

    def __enter__(self) -> "Session":
        self._remove_stale()
        try:
            self.dir.mkdir()
        except OSError as err:
            raise TraceError(f"cannot create the tracefs instance {self.dir}: {err.strerror or err}") from None
        try:
            _write(self.dir / "tracing_on", "0")
            clocks = (self.dir / "trace_clock").read_text().replace("[", "").replace("]", "").split()
            # a clock in step across CPUs: the markers on thread 0's CPU cut the other CPUs' events
            self.clock = next((c for c in ("mono", "global") if c in clocks), clocks[0] if clocks else "")
            if self.clock:
                _write(self.dir / "trace_clock", self.clock)
            _write(self.dir / "options" / "overwrite", "0")
            _write(self.dir / "options" / "event-fork", "1")
            self.resize(self.kb)
            for event in EVENTS:
                _write(self.dir / "events" / event / "enable", "1")
        except OSError as err:
            self.close()
            raise TraceError(f"cannot set up the tracefs instance {self.dir}: {err}") from None
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def resize(self, kb: int) -> None:
        _write(self.dir / "buffer_size_kb", str(int(kb)))
        self.kb = int((self.dir / "buffer_size_kb").read_text().split()[0])

    def start(self, cpus) -> None:
        """Before a cell: its CPUs, an empty pid list (the benchmark writes its own), an empty
        buffer and its lost counts back to zero."""
        _write(self.dir / "tracing_on", "0")
        _write(self.dir / "tracing_cpumask", cpumask_hex(cpus))
        _write(self.dir / "set_event_pid", "")
        _write(self.dir / "trace", "")
        self._lost = {int(c): 0 for c in cpus}

    def lost(self, cpus) -> int:
        """The events the CPUs' buffers lost since the last call (their stats are cumulative)."""
        out = 0
        for c in cpus:
            now = _stats_lost(_read(self.dir / "per_cpu" / f"cpu{int(c)}" / "stats"))
            out += now - self._lost.get(int(c), 0)
            self._lost[int(c)] = now
        return out

    def drain(self) -> str:
        """Everything in the buffer, consumed (``trace_pipe``, without blocking): the buffer is
        empty after it, with no reset (which waits for an RCU grace period)."""
        chunks = []
        fd = os.open(self.dir / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        try:
            while True:
                try:
                    chunk = os.read(fd, 1 << 20)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks).decode(errors="replace")

    def take(self, cpus) -> dict:
        """One trial's trace text and the events its CPUs' buffers lost; the buffer is left empty.
        ``account()`` turns it into counts (later: the benchmark's busy threads still spin now)."""
        return {"text": self.drain(), "lost": self.lost(cpus)}

    def close(self) -> None:
        if not self.dir.is_dir():
            return
        for event in EVENTS:
            try:
                _write(self.dir / "events" / event / "enable", "0")
            except OSError:
                pass
        try:
            _write(self.dir / "tracing_on", "0")
        except OSError:
            pass
        try:
            self.dir.rmdir()
        except OSError:
            pass

    def _remove_stale(self) -> None:
        """Instances left by a measurement that was killed (its pid no longer runs)."""
        base = self.root / "instances"
        for inst in base.glob("study-*"):
            pid = inst.name[len("study-"):]
            if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
                try:
                    inst.rmdir()
                except OSError:
                    pass


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


# ----------------------------------------------------------------------------- parsing


@dataclass
class Event:
    cpu: int
    pid: int
    ts: float
    event: str
    body: str


def parse_line(line: str) -> Event | None:
    """One line of the ``trace`` file: ``task-pid [cpu] flags timestamp: event: body``.

    String searches rather than one regular expression: a trial's trace is tens of thousands
    of lines (the task's name may hold anything but the CPU field; the flags never a colon)."""
    close = line.find("] ")
    if close < 0:
        return None
    opened = line.rfind("[", 0, close)
    stamp = line.find(": ", close)
    if opened < 0 or stamp < 0:
        return None
    name_end = line.find(":", stamp + 2)
    dash = line.rfind("-", 0, opened)
    if name_end < 0 or dash < 0:
        return None
    try:
        cpu = int(line[opened + 1:close])
        pid = int(line[dash + 1:opened].split()[0])
        ts = float(line[close + 2:stamp].split()[-1])
    except (ValueError, IndexError):
        return None
    return Event(cpu, pid, ts, line[stamp + 2:name_end], line[name_end + 1:].strip())


def classify(event: Event) -> str | None:
    """The kind (a key of KINDS) of a tlb_flush or page_fault_user event; None for others."""
    if event.event == "tlb_flush":
        m = FLUSH.search(event.body)
        if not m:
            return None
        pages, reason = int(m[1]), int(m[2])
        if pages == ULONG_MAX:
            pages = -1
        size = "full" if pages < 0 else "partial" if pages > 0 else "none"
        if reason in (2, 3):
            return f"local_{size}"
        if reason == 1:
            return f"remote_{size}"
        if reason == 4:
            return "ipi_send"
        if reason == 0:
            return "switch_full" if pages < 0 else "switch_none"
        if reason == 5:
            return "wrong_cpu"
        return None
    if event.event == "page_fault_user":
        m = FAULT.search(event.body)
        if not m:
            return None
        code = int(m[1], 16)
        access = "write" if code & 2 else "read"
        return f"fault_{access}_{'prot' if code & 1 else 'notpresent'}"
    return None


def roles(cpus) -> dict[str, list[int]]:
    """The CPUs of each role: thread 0's first, the others after."""
    cpus = [int(c) for c in cpus]
    return {"initiator": cpus[:1], "others": cpus[1:]}


def count_trial(text: str, trial: int, cpus) -> dict:
    """Per role, the count of each event kind between trial ``trial``'s markers.

    Returns ``{"counts": {role: {kind: n}}, "roles": {role: [cpu]}, "lost": n, "marked": bool,
    "other_events": n}``: ``lost`` counts the ``[LOST n EVENTS]`` lines inside the window (the
    caller adds the ring buffer's own counts), ``marked`` whether both markers were found,
    ``other_events`` the events of other kinds (none expected: only the two events are on).
    """
    where = roles(cpus)
    role_of = {cpu: role for role, cs in where.items() for cpu in cs}
    counts = {role: dict.fromkeys(KINDS, 0) for role in ROLES}
    state = "before"
    lost = other = 0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if state == "inside":
            m = LOST.match(line)
            if m:
                lost += int(m[2])
                continue
        event = parse_line(line)
        if event is None:
            continue
        if event.event == "tracing_mark_write":
            m = MARKER.search(event.body)
            if m and int(m[1]) == trial:
                if m[2] == "begin" and state == "before":
                    state = "inside"
                elif m[2] == "end" and state == "inside":
                    state = "after"
            continue
        if state != "inside":
            continue
        role = role_of.get(event.cpu)
        kind = classify(event)
        if role is None or kind is None:
            other += 1
            continue
        counts[role][kind] += 1
    return {"counts": counts, "roles": where, "lost": lost, "marked": state == "after", "other_events": other}


@dataclass
class CellTrace:
    """What the manifest says of one cell's trace."""

    trials: int = 0
    lost: int = 0
    flagged: list[int] = field(default_factory=list)   # trials with lost events or a missing marker

    def note(self) -> str:
        if not self.flagged:
            return "ok"
        return (f"lost {self.lost} events in {len(self.flagged)} of {self.trials} trials "
                f"({', '.join(map(str, self.flagged))}): their event rates are left out")


def cell_trace(trials: list[dict]) -> CellTrace:
    out = CellTrace(trials=len(trials))
    for t in trials:
        acc = t.get("trace")
        if acc is None:
            continue
        if acc["lost"] or not acc["marked"]:
            out.flagged.append(int(t["trial"]))
            out.lost += int(acc["lost"])
    return out


def account(taken: dict, trial: int, cpus) -> dict:
    """``Session.take()``'s text and lost count as one trial's account (``count_trial``)."""
    acc = count_trial(taken["text"], trial, cpus)
    acc["lost"] += int(taken["lost"])
    return acc


def usable_account(acc: dict | None) -> bool:
    return acc is not None and not acc["lost"] and acc["marked"]


def metric_name(role: str, kind: str) -> str:
    return trace_metric(role, kind)


def metric_names() -> list[str]:
    return [metric_name(role, kind) for role in ROLES for kind in KINDS]
