"""The measurement config (conf/measure/*.yaml): its settings and its grid of host cells.

A cell's ``workload`` is one of the benchmark's loops (study/measure/bench.c): the engine's
workloads it runs as they are (mprotect_toggle, madv_free, uffd_wp), or a host loop of its own
(``HOST``), each mapped here onto the engine workload that comes nearest, with the knobs it
sets: ``mprotect_vma`` (the range inside a bigger VMA: a split and merge per call),
``refill`` (the other thread's passes over a buffer of its own after each flushing call) and
``lazy_wake`` (a sleeping thread woken after the mm's generation moved).  Their cells are not
``modelled``: calibrate neither fits nor predicts them (the engine has no VMA split, no quiet
passes or wake-ups to compare with); they are the kernel's account for the next fits.
"""

from __future__ import annotations

import fnmatch
import itertools
from dataclasses import dataclass
from typing import Any

from study.engine.machine import Machine
from study.errors import ConfigError
from study.measure.host import HostCpu, placement_host_cpus
from study.measure.run import MeasureCell
from study.workloads.spec import workload_from_dict

AXES = ("workload", "threads", "placement", "others", "pages", "dirty", "write_rate", "writes_per_round",
        "working_set", "vma", "rounds")
MAX_WS_PAGES = 65536      # the other thread's buffer (256 MiB): far beyond any STLB
MAX_VMA_PAGES = 65536


@dataclass(frozen=True)
class HostLoop:
    """A loop of the benchmark's own: the engine workload it maps onto and what it fixes."""

    workload: str                 # the engine workload that comes nearest
    knob: str                     # its axis (in the name's tail)
    threads: int | None           # the threads it needs (None: any)
    others: str | None            # the other threads it needs (None: either)
    doc: str


HOST: dict[str, HostLoop] = {
    "mprotect_vma": HostLoop("mprotect_toggle", "vma", None, None,
                             "mprotect_toggle's round on a range in the middle of a VMA of `vma` pages (fenced by "
                             "PROT_NONE pages): more pages than the range split the VMA at each mprotect(PROT_READ) "
                             "and merge it back at mprotect(PROT_READ|PROT_WRITE); as many toggle the whole VMA"),
    "refill": HostLoop("mprotect_toggle", "working_set", 2, "busy",
                       "thread 1 makes a pass over `working_set` pages of its own after each of thread 0's "
                       "mprotect calls and twice more with no call before (ws_pass, ws_pass_quiet)"),
    "lazy_wake": HostLoop("mprotect_toggle", "working_set", 2, "idle",
                          "thread 1 sleeps (its CPU lazy) while thread 0 calls mprotect twice, then wakes and makes "
                          "a pass over `working_set` pages; and the same wake and pass with no call (wake, "
                          "wake_quiet, ws_pass, ws_pass_quiet)"),
}
OTHERS = ("busy", "idle")
SETTINGS = {"name": str, "description": str, "trials": int, "rounds": int, "warmup": int, "max_samples": int,
            "seed": int, "busy_load": float, "nice": int, "outlier_us": float, "off_cpu_gap_us": float,
            "grids": list, "calibrate": dict}
CALIBRATE = {"train": list, "replicates": int, "rounds": int, "seed": int, "max_nfev": int,
             "predict_replicates": int, "predict_rounds": int}


@dataclass(frozen=True)
class MeasureConfig:
    name: str
    description: str
    trials: int
    rounds: int
    warmup: int
    max_samples: int
    seed: int
    busy_load: float
    nice: int
    outlier_us: float
    off_cpu_gap_us: float
    grids: list
    calibrate: dict


def measure_config(data: Any) -> MeasureConfig:
    """Check the ``measure`` node: every key known, every value of the right type and range."""
    if not isinstance(data, dict):
        raise ConfigError("measure", "must be a mapping (conf/measure/<name>.yaml)")
    for key, value in data.items():
        if key not in SETTINGS:
            raise ConfigError(f"measure.{key}", f"unknown key; allowed: {', '.join(SETTINGS)}")
        kind = SETTINGS[key]
        ok = isinstance(value, kind) and not isinstance(value, bool) or (kind is float and isinstance(value, int)
                                                                         and not isinstance(value, bool))
        if not ok:
            raise ConfigError(f"measure.{key}", f"must be {kind.__name__}, got {value!r}")
    missing = [k for k in SETTINGS if k not in data]
    if missing:
        raise ConfigError(f"measure.{missing[0]}", "missing")
    for key in ("trials", "rounds", "max_samples"):
        if data[key] < 1:
            raise ConfigError(f"measure.{key}", f"must be >= 1, got {data[key]}")
    if data["trials"] < 2:
        raise ConfigError("measure.trials", "must be >= 2 (a CI over trials needs two)")
    if not -20 <= data["nice"] <= 19:
        raise ConfigError("measure.nice", f"must be in [-20, 19], got {data['nice']}")
    if data["outlier_us"] < 0:
        raise ConfigError("measure.outlier_us", "must be >= 0 (0: keep every call in the means)")
    if data["off_cpu_gap_us"] <= 0:
        raise ConfigError("measure.off_cpu_gap_us", f"must be > 0 microseconds, got {data['off_cpu_gap_us']}")
    if data["warmup"] < 0:
        raise ConfigError("measure.warmup", "must be >= 0")
    cal = data["calibrate"]
    for key, value in cal.items():
        if key not in CALIBRATE:
            raise ConfigError(f"measure.calibrate.{key}", f"unknown key; allowed: {', '.join(CALIBRATE)}")
        if not isinstance(value, CALIBRATE[key]) or isinstance(value, bool):
            raise ConfigError(f"measure.calibrate.{key}", f"must be {CALIBRATE[key].__name__}, got {value!r}")
    return MeasureConfig(**{k: data[k] for k in SETTINGS})


def cell_name(workload: str, threads: int, placement: str, others: str, pages: int, dirty: float,
              write_rate: float | None = None, writes_per_round: int | None = None,
              working_set: int | None = None, vma: int | None = None) -> str:
    where = "t1" if threads == 1 else f"t{threads}-{placement}-{others}"
    if workload == "uffd_wp":
        tail = f"w{write_rate:g}x{writes_per_round}"
    elif workload in HOST:
        tail = f"n{working_set}" if HOST[workload].knob == "working_set" else f"v{vma}"
    else:
        tail = f"d{dirty:g}"
    return f"{workload}/{where}/p{pages}/{tail}"


def expand(config: MeasureConfig, cpus: list[HostCpu], machine: Machine) -> list[MeasureCell]:
    """Every cell of every sub-grid, in grid order; the first impossible one is a ConfigError."""
    cells: list[MeasureCell] = []
    seen = set()
    for index, grid in enumerate(config.grids):
        if not isinstance(grid, dict):
            raise ConfigError(f"measure.grids[{index}]", "must be a mapping of axis -> list of values")
        for axis, values in grid.items():
            if axis not in AXES:
                raise ConfigError(f"measure.grids[{index}].{axis}", f"unknown axis; allowed: {', '.join(AXES)}")
            if not isinstance(values, list) or not values:
                raise ConfigError(f"measure.grids[{index}].{axis}", "must be a non-empty list")
        axes = list(grid.items())
        for combo in itertools.product(*(v for _, v in axes)):
            point = dict(zip((a for a, _ in axes), combo))
            cell = _cell(point, cpus, machine, f"measure.grids[{index}]")
            if cell.name not in seen:
                seen.add(cell.name)
                cells.append(cell)
    return cells


def _int_axis(point: dict, axis: str, where: str, low: int, high: int, default: int | None = None) -> int | None:
    value = point.get(axis, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{where}.{axis}", f"must be an integer in [{low}, {high}], got {value!r}")
    return value


def _cell(point: dict, cpus: list[HostCpu], machine: Machine, where: str) -> MeasureCell:
    workload = point.get("workload", "mprotect_toggle")
    loop = HOST.get(workload)
    threads = point.get("threads", loop.threads if loop and loop.threads else 1)
    placement = point.get("placement", "core")
    others = point.get("others", loop.others if loop and loop.others else "busy")
    rounds = _int_axis(point, "rounds", where, 1, 10**7)
    for axis in ("working_set", "vma"):
        if axis in point and (loop is None or loop.knob != axis):
            owners = [name for name, h in HOST.items() if h.knob == axis]
            raise ConfigError(f"{where}.{axis}", f"only {' and '.join(owners)} take {axis}")
    if loop is not None:
        if loop.threads is not None and threads != loop.threads:
            raise ConfigError(f"{where}.threads", f"{workload} runs {loop.threads} threads, got {threads!r}")
        if loop.others is not None and others != loop.others:
            raise ConfigError(f"{where}.others", f"{workload}'s other thread is {loop.others}, got {others!r}")
        if float(point.get("dirty", 1.0)) != 1.0:
            raise ConfigError(f"{where}.dirty", f"{workload}'s thread 0 writes its pages every round: only 1.0")
    if others not in OTHERS:
        raise ConfigError(f"{where}.others", f"must be one of {', '.join(OTHERS)}, got {others!r}")
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= len(cpus):
        raise ConfigError(f"{where}.threads", f"must be between 1 and this host's {len(cpus)} online CPUs, "
                                              f"got {threads!r}")
    host_cpus = placement_host_cpus(cpus, threads, placement)
    if loop is not None:
        return _host_cell(workload, loop, point, threads, placement, others, rounds, host_cpus, machine, where)
    if workload == "uffd_wp" and others != "busy":
        raise ConfigError(f"{where}.others", "uffd_wp's writers run the workload: only busy")
    spec = {"name": workload, "threads": threads, "placement": placement if threads > 1 else "core",
            "pages": point.get("pages", 1), "dirty_ratio": float(point.get("dirty", 1.0)),
            "lazy_share": 1.0 if (others == "idle" and threads > 1) else 0.0}
    if workload == "uffd_wp":
        spec["write_rate"] = float(point.get("write_rate", 0.5))
        spec["writes_per_round"] = point.get("writes_per_round", 4)
    elif "write_rate" in point or "writes_per_round" in point:
        raise ConfigError(f"{where}.write_rate", "only uffd_wp has write_rate and writes_per_round")
    ws = workload_from_dict(spec, machine, prefix=where)
    name = cell_name(workload, threads, placement, others if threads > 1 else "", ws.pages, ws.dirty_ratio,
                     spec.get("write_rate"), spec.get("writes_per_round"))
    return MeasureCell(name=name, workload=ws, others=others if threads > 1 else "busy", cpus=tuple(host_cpus),
                       rounds=rounds)


def _host_cell(workload: str, loop: HostLoop, point: dict, threads: int, placement: str, others: str,
               rounds: int | None, host_cpus: list[int], machine: Machine, where: str) -> MeasureCell:
    """A host loop's cell (its threads, others and CPUs already checked): the engine workload it
    maps onto, with the knobs it sets."""
    pages = point.get("pages", 1)
    idle = others == "idle" and threads > 1
    spec = {"name": loop.workload, "threads": threads, "placement": placement if threads > 1 else "core",
            "pages": pages, "dirty_ratio": 1.0, "lazy_share": 1.0 if idle else 0.0}
    knobs: tuple[tuple[str, int], ...]
    if loop.knob == "working_set":
        n = _int_axis(point, "working_set", where, 1, MAX_WS_PAGES, default=64)
        spec["working_set"] = n
        if workload == "lazy_wake":
            spec["lazy_wake_rate"] = 1.0
        knobs, tail = (("ws", n),), {"working_set": n}
    else:
        vma = _int_axis(point, "vma", where, 1, MAX_VMA_PAGES, default=pages if isinstance(pages, int) else 1)
        if isinstance(pages, int) and vma < pages:
            raise ConfigError(f"{where}.vma", f"the VMA holds the range: must be >= pages ({pages}), got {vma}")
        knobs, tail = (("vma", vma),), {"vma": vma}
    ws = workload_from_dict(spec, machine, prefix=where)
    name = cell_name(workload, threads, placement, others if threads > 1 else "", ws.pages, ws.dirty_ratio, **tail)
    return MeasureCell(name=name, workload=ws, others=others if threads > 1 else "busy", cpus=tuple(host_cpus),
                       bench=workload, knobs=knobs, modelled=False, rounds=rounds)


def select(names: list[str], patterns: list[str]) -> list[str]:
    """The names matched by any glob pattern, in their order."""
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
