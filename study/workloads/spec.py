"""What a workload is: one class that owns its knobs, its calls, its loop and what the report says of it.

A workload is a frozen dataclass subclassing ``WorkloadSpec``, in a module of its own in this
package (study/workloads/<name>.py), with its option file ``conf/workload/<name>.yaml``.  Defining
the class registers it (``WORKLOADS``, by its ``name``); study/workloads/__init__.py imports every
module of the package, so a new workload needs no other edit.  The class declares:

* its knobs, each a ``param()`` with type, unit, range and one-line doc (study.params): the config
  schema, the range check, the sweep's manifest and the analysis's knob lists come from them;
* ``CALLS``: the calls it books (label -> Call: the call in words, what it is, whether it may
  flush); latencies are per label (``lat_<label>``), and ``strict_share_<label>`` per flushing one;
* ``setup()`` (unmeasured) and ``run_round()``: the operations it issues to the engine;
* ``loop_steps()`` (engine steps of one iteration of its loop, for chunking) and ``events_per_round()`` (a
  generous bound on the events one round charges, for the int64 check of ``limits``);
* ``CROSSOVER`` (and ``CROSSOVER_Y``): the knobs along which a crossover is looked for (and the
  second knob that splits its lines), most telling first;
* ``ROLES``: its threads' roles in its own words, each with the knob of that role's hot set;
* ``CONDITIONS``: the knobs that can flip a verdict, with the values to scan them at
  (``python -m study conditions`` runs strict and relaxed along each, from each headline's setting);
* report hooks: ``TITLE``, ``ABOUT`` (a paragraph), ``PANEL`` (its figure: metrics along its main
  knob, with the ablation of the patch that matters most to it), ``PREDICTED_STRICT_SHARE``.

The sweep writes each workload's ``describe()`` into its manifest, and the analysis and report read
it from there: no module outside this package (and the host benchmark's mapping in study/measure)
names a workload.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from study.engine.machine import PLACEMENTS, Machine, build_dataclass
from study.errors import ConfigError
from study.params import check, describe, param, undeclared

# More TLB entries than any x86 STLB holds (a few thousand) by far; the bound keeps refill
# cycles (working_set x page_walk per full flush) inside the int64 counters.
MAX_WORKING_SET = 1 << 20
MAX_PAGES = 512


@dataclass(frozen=True)
class Call:
    """One kind of call a workload books: ``lat_<label>`` is its mean latency on the acting CPU."""

    text: str            # the call in words, e.g. "mprotect(PROT_READ)"
    doc: str             # who makes it and what it covers
    flushes: bool = False   # may flush: its share of strict flushes is booked (strict_share_<label>)


# a scanned value that stands for the machine's tlb_single_page_flush_ceiling (plus one)
CEILING, PAST_CEILING = "ceiling", "ceiling+1"


@dataclass(frozen=True)
class Condition:
    """A knob that can flip a verdict: the values to run strict and relaxed at (the setting's own
    value is added), how a flip between two neighbours is narrowed (``refine``: "geometric" or
    "linear" points between them, "none": the neighbours are as close as the knob allows), and
    why it matters, in words."""

    knob: str
    values: tuple
    why: str
    refine: str = "none"


# at most this many values per knob, refinement included: bounds a scan's runs
MAX_CONDITION_VALUES = 16


@dataclass(frozen=True)
class Panel:
    """A workload's own figure: ``metrics`` along the first of ``x`` the sweep varies, strict,
    relaxed and relaxed without ``idea`` (the patch that matters most to it)."""

    x: tuple[str, ...]
    metrics: tuple[str, ...]
    idea: str


# name -> class, in the order the classes were defined
WORKLOADS: dict[str, type["WorkloadSpec"]] = {}


@dataclass(frozen=True)
class WorkloadSpec:
    """Knobs common to every workload."""

    name: str = param("", "name", "the workload (its module and option file)")
    threads: int = param(2, "threads", "application threads of the mm; thread 0 is the initiator (or the "
                                        "uffd monitor); at most the machine's CPUs", low=1)
    placement: str = param("core", "placement", "where the threads run: smt fills hyper-thread siblings first, "
                                                "core one thread per physical core, socket alternates sockets",
                           choices=PLACEMENTS)
    pages: int = param(1, "pages", "pages in the range each call covers", low=1, high=MAX_PAGES)
    dirty_ratio: float = param(1.0, "share", "the share of pages dirty when the workload write-protects them; "
                                             "every other page is clean because the workload MADV_FREE'd it "
                                             "(each workload's docstring says how)", low=0.0, high=1.0)
    working_set: int = param(0, "TLB entries", "the hot set of each running thread other than thread 0: TLB "
                                               "entries of other memory it keeps hot; every full flush of its CPU "
                                               "costs it one STLB miss and page walk per entry, whether or not it "
                                               "touches the range", low=0, high=MAX_WORKING_SET)
    initiator_working_set: int = param(0, "TLB entries", "thread 0's hot set (the thread that makes the calls), "
                                                         "refilled after each full flush of its CPU",
                                       low=0, high=MAX_WORKING_SET)
    sleeper_working_set: int = param(0, "TLB entries", "the hot set of each sleeping thread (lazy_share), refilled "
                                                       "when it wakes after a full flush", low=0, high=MAX_WORKING_SET)
    lazy_share: float = param(0.0, "share", "share of the threads other than thread 0 that sleep with the mm "
                                            "loaded (lazy CPUs)", low=0.0, high=1.0)
    lazy_wake_rate: float = param(0.0, "chance per round", "chance per round that each sleeping thread wakes up "
                                                           "(switch_mm back in: a full flush if its CPU missed a "
                                                           "generation) and goes back to sleep", low=0.0, high=1.0)
    on_cpu_share: float = param(1.0, "share", "share of time each running thread other than thread 0 is on its "
                                              "CPU; off it, another mm is loaded there: should_flush_tlb() sends "
                                              "no IPI and switch_mm_irqs_off() flushes fully when it returns",
                                low=0.0, high=1.0)

    # Knobs in which the lanes of one lockstep run may differ (study.workloads.simulate_lanes):
    # knobs that change only which replicates act in some of the workload's steps, never which
    # steps it issues.  Not a field: no part of a cell's identity.  dirty_ratio: every workload's
    # MADV_FREE and (re)writes of the pages it keeps dirty are masked steps.
    LANE_FIELDS: ClassVar[tuple[str, ...]] = ("dirty_ratio",)
    # the calls every workload may book (run_workload's lazy wake-ups)
    COMMON_CALLS: ClassVar[dict[str, Call]] = {
        "lazy_wakeup": Call("switch_mm_irqs_off()", "a sleeping thread's CPU switching the mm back in"),
    }
    CALLS: ClassVar[dict[str, Call]] = {}
    # the roles of the threads, in the workload's own words, and the knob of each role's hot set
    ROLES: ClassVar[dict[str, tuple[str, str]]] = {
        "initiator": ("thread 0, which makes the calls", "initiator_working_set"),
        "others": ("the other threads, running in the mm", "working_set"),
        "sleepers": ("the other threads asleep with the mm loaded (lazy_share)", "sleeper_working_set"),
    }
    # the knobs that can flip a verdict (the report states each headline's conditions along them);
    # a workload adds its own to these
    CONDITIONS: ClassVar[tuple[Condition, ...]] = (
        Condition("working_set", (0, 16, 64, 256, 1024), "the other threads' hot set, refilled after each full "
                  "flush of their CPUs", refine="geometric"),
        Condition("initiator_working_set", (0, 16, 64, 256, 1024), "thread 0's hot set, refilled after each full "
                  "flush of its CPU", refine="geometric"),
        Condition("sleeper_working_set", (0, 16, 64, 256, 1024), "the sleeping threads' hot set, refilled when "
                  "they wake behind mm->tlb_gen", refine="geometric"),
        Condition("pages", (1, 8, CEILING, PAST_CEILING, 128), "the range against tlb_single_page_flush_ceiling: "
                  "past it every flush is a full flush", refine="linear"),
    )
    CROSSOVER: ClassVar[tuple[str, ...]] = ()
    # the second knob of a crossover, most telling first: a big working set is what a full
    # flush throws away
    CROSSOVER_Y: ClassVar[tuple[str, ...]] = ("workload.working_set", "workload.threads", "workload.pages",
                                              "workload.placement", "workload.lazy_share")
    TITLE: ClassVar[str] = ""
    ABOUT: ClassVar[str] = ""
    PANEL: ClassVar[Panel | None] = None
    # the flushing call whose write-protect of k pages goes strict under the RFC's patch 12 iff one
    # of its pages is dirty, each independently with probability dirty_ratio: 1-(1-d)^k of its
    # calls (the report draws the observed share against it); None: no such prediction
    PREDICTED_STRICT_SHARE: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if isinstance(name, dataclasses.Field):   # before @dataclass has run: the param() field
            name = name.default
        if isinstance(name, str) and name:
            if name in WORKLOADS and WORKLOADS[name].__qualname__ != cls.__qualname__:
                raise TypeError(f"workload {name!r} is defined twice ({WORKLOADS[name].__module__}, {cls.__module__})")
            WORKLOADS[name] = cls

    # ------------------------------------------------------------------ the loop

    def setup(self, d, work) -> None:
        """What the program does before the measured loop (not booked); default: nothing."""

    def run_round(self, d, work, running) -> None:
        """One iteration of the loop for every replicate (``d``: the Driver, ``work``: the work
        stream, ``running``: which CPU slots run a thread that is not asleep)."""
        raise NotImplementedError

    def loop_steps(self) -> int:
        """Engine steps of one iteration of ``run_round()`` (each a fixed cost, whatever acts)."""
        raise NotImplementedError

    def steps_per_round(self) -> float:
        """Engine steps of one round, the loop's and the lazy wake-ups' (run_workload: in and out
        per sleeping thread): shapes the chunks."""
        wakes = 2 * round(self.lazy_share * (self.threads - 1)) if self.lazy_wake_rate > 0 else 0
        return float(self.loop_steps() + wakes)

    def events_per_round(self, n_cpus: int) -> float:
        """A generous bound on the events one round charges: each page and working-set entry of
        each thread, a few syscalls and faults, and per CPU an IPI and a handler."""
        hot = max(self.working_set, self.initiator_working_set, self.sleeper_working_set)
        return (self.pages + hot + 16) * (self.threads + 2) + 4 * n_cpus

    def sleepers(self):
        """Which threads sleep with the mm loaded: the last lazy_share of threads 1..T-1."""
        n = int(round(self.lazy_share * (self.threads - 1)))
        return [i >= self.threads - n and i > 0 for i in range(self.threads)]

    def working_sets(self) -> list[int]:
        """Each thread's hot set, by its role: thread 0's, a sleeper's, a running thread's."""
        asleep = self.sleepers()
        return [self.initiator_working_set if i == 0 else self.sleeper_working_set if asleep[i] else self.working_set
                for i in range(self.threads)]

    def conditions(self, machine: Machine, kernel) -> list[tuple[Condition, tuple]]:
        """The conditions that apply to this setting, each with its values resolved (the machine's
        ceiling, the setting's own value added, sorted; values the knob's range, the machine or
        the kernel refuse left out): a role's hot set only if the role has a thread."""
        asleep = self.sleepers()
        has = {"initiator_working_set": True, "sleeper_working_set": any(asleep),
               "working_set": any(not s for s in asleep[1:])}
        out = []
        for cond in self.CONDITIONS:
            if not has.get(cond.knob, True):
                continue
            ceiling = machine.tlb_single_page_flush_ceiling
            wanted = {ceiling if v == CEILING else ceiling + 1 if v == PAST_CEILING else v for v in cond.values}
            wanted.add(getattr(self, cond.knob))
            values = tuple(v for v in sorted(wanted) if self.allows(cond.knob, v, machine, kernel))
            if len(values) > 1:
                out.append((cond, values))
        return out

    def allows(self, knob: str, value, machine: Machine, kernel) -> bool:
        """Whether this setting with ``knob`` = ``value`` is one the configuration accepts."""
        try:
            other = dataclasses.replace(self, **{knob: value}).validate(machine)
            other.check_kernel(kernel)
        except (ConfigError, TypeError, ValueError):
            return False
        return True

    def check_kernel(self, kernel, prefix: str = "workload") -> None:
        """A rule between the workload and the kernel it runs on (a uAPI flag the kernel lacks):
        raise ConfigError naming the knob; by default none."""

    def booked_cycles_per_round(self) -> float:
        """Cycles a round books outside the engine's events (a monitor's round trip, say)."""
        return 0.0

    # ------------------------------------------------------------------ checks and words

    def validate(self, machine: Machine, prefix: str = "workload") -> "WorkloadSpec":
        """Every knob within its declared range, and the cross-field rules."""
        if self.name not in WORKLOADS:
            raise ConfigError(f"{prefix}.name", f"unknown workload {self.name!r}; allowed: {', '.join(WORKLOADS)}")
        check(self, prefix)
        if self.threads > machine.n_cpus:
            raise ConfigError(f"{prefix}.threads", f"must be between 1 and the {machine.n_cpus} CPUs of machine "
                                                   f"{machine.name!r}, got {self.threads}")
        return self

    @classmethod
    def calls(cls) -> dict[str, Call]:
        return {**cls.CALLS, **cls.COMMON_CALLS}

    @classmethod
    def flush_labels(cls) -> tuple[str, ...]:
        return tuple(label for label, call in cls.CALLS.items() if call.flushes)

    @classmethod
    def knobs(cls) -> tuple[str, ...]:
        """The workload's knobs (every field but its name), in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "name")

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Everything the analysis and the report need to know of the workload, as plain data."""
        return {
            "class": cls.__name__,
            "title": cls.TITLE, "about": cls.ABOUT,
            "knobs": describe(cls, skip=("name",)),
            "calls": {label: dataclasses.asdict(call) for label, call in cls.calls().items()},
            "lane_fields": list(cls.LANE_FIELDS),
            "roles": {role: {"words": words, "knob": knob} for role, (words, knob) in cls.ROLES.items()},
            "crossover": list(cls.CROSSOVER), "crossover_y": list(cls.CROSSOVER_Y),
            "conditions": {c.knob: {"values": list(c.values), "why": c.why, "refine": c.refine}
                           for c in cls.CONDITIONS},
            "panel": dataclasses.asdict(cls.PANEL) if cls.PANEL is not None else None,
            "predicted_strict_share": cls.PREDICTED_STRICT_SHARE,
        }


def problems(cls: type[WorkloadSpec]) -> list[str]:
    """What a workload class lacks of its declaration (empty: complete): a knob without its unit
    or doc, no calls, no loop, no step count or event bound, hooks naming what does not exist."""
    out = [f"knob {name}: no unit or doc (declare it with study.params.param)" for name in undeclared(cls)]
    try:
        spec = cls()
    except Exception as err:   # noqa: BLE001 - a class whose defaults do not build
        return out + [f"its defaults do not build: {err}"]
    if not cls.CALLS or any(not c.text or not c.doc for c in cls.CALLS.values()):
        out.append("CALLS: at least one call, each with its text and doc")
    for hook in ("run_round", "loop_steps"):
        if getattr(cls, hook) is getattr(WorkloadSpec, hook):
            out.append(f"{hook}(): not defined")
    if not out:
        if not (isinstance(spec.loop_steps(), int) and spec.loop_steps() >= 1):
            out.append("loop_steps(): must be an int >= 1 at the defaults")
        if not spec.events_per_round(spec.threads) > 0:
            out.append("events_per_round(): must be > 0 at the defaults")
    knobs = {f"workload.{k}" for k in cls.knobs()}
    out += [f"ROLES: {role}'s knob {knob} is not a knob" for role, (_, knob) in cls.ROLES.items()
            if f"workload.{knob}" not in knobs]
    for cond in cls.CONDITIONS:
        if f"workload.{cond.knob}" not in knobs:
            out.append(f"CONDITIONS: {cond.knob} is not a knob")
        if cond.refine not in ("geometric", "linear", "none") or not cond.why or len(cond.values) < 2:
            out.append(f"CONDITIONS: {cond.knob} needs >= 2 values, its words and refine geometric|linear|none")
        if len(cond.values) + 1 > MAX_CONDITION_VALUES:
            out.append(f"CONDITIONS: {cond.knob} scans more than {MAX_CONDITION_VALUES} values")
    for hook in ("CROSSOVER", "CROSSOVER_Y"):
        out += [f"{hook}: {k} is not a knob" for k in getattr(cls, hook) if k not in knobs]
    if cls.PANEL is not None:
        out += [f"PANEL.x: {k} is not a knob" for k in cls.PANEL.x if k not in knobs]
        out += [f"PANEL.metrics: {m} is not one of its calls' latencies" for m in cls.PANEL.metrics
                if m.startswith("lat_") and m[4:] not in cls.calls()]
    if cls.PREDICTED_STRICT_SHARE is not None and cls.PREDICTED_STRICT_SHARE not in cls.flush_labels():
        out.append(f"PREDICTED_STRICT_SHARE: {cls.PREDICTED_STRICT_SHARE} is not one of its flushing calls")
    if not cls.TITLE or not cls.ABOUT:
        out.append("TITLE and ABOUT: the report's words for it")
    return out


def labels() -> tuple[str, ...]:
    """Every call label of every registered workload (first-seen order)."""
    return tuple(dict.fromkeys(label for cls in WORKLOADS.values() for label in cls.calls()))


def workload_from_dict(data: dict[str, Any], machine: Machine, prefix: str = "workload") -> WorkloadSpec:
    """Build and validate the workload named by ``data['name']``."""
    if not isinstance(data, dict):
        raise ConfigError(prefix, "must be a mapping")
    name = data.get("name")
    if name not in WORKLOADS:
        raise ConfigError(f"{prefix}.name", f"unknown workload {name!r}; allowed: {', '.join(WORKLOADS)}")
    return build_dataclass(WORKLOADS[name], data, prefix).validate(machine, prefix)
