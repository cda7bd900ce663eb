"""The measurement config (conf/measure/*.yaml): its settings and its grid of host cells."""

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

AXES = ("workload", "threads", "placement", "others", "pages", "dirty", "write_rate", "writes_per_round")
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
              write_rate: float | None = None, writes_per_round: int | None = None) -> str:
    where = "t1" if threads == 1 else f"t{threads}-{placement}-{others}"
    tail = f"w{write_rate:g}x{writes_per_round}" if workload == "uffd_wp" else f"d{dirty:g}"
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


def _cell(point: dict, cpus: list[HostCpu], machine: Machine, where: str) -> MeasureCell:
    workload = point.get("workload", "mprotect_toggle")
    threads = point.get("threads", 1)
    placement = point.get("placement", "core")
    others = point.get("others", "busy")
    if others not in OTHERS:
        raise ConfigError(f"{where}.others", f"must be one of {', '.join(OTHERS)}, got {others!r}")
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= len(cpus):
        raise ConfigError(f"{where}.threads", f"must be between 1 and this host's {len(cpus)} online CPUs, "
                                              f"got {threads!r}")
    host_cpus = placement_host_cpus(cpus, threads, placement)
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
    return MeasureCell(name=name, workload=ws, others=others if threads > 1 else "busy", cpus=tuple(host_cpus))


def select(names: list[str], patterns: list[str]) -> list[str]:
    """The names matched by any glob pattern, in their order."""
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
