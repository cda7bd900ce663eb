"""Expand a sweep's sub-grids into validated cells, before any work is done.

A sub-grid is a product of axes.  An axis ``machine``/``kernel``/``workload``/``policy`` names a group
option (a yaml file), which Hydra composes together with the command line's overrides, so
``workload.pages=4`` on the command line applies to whichever workload a cell selects.
Dotted axes (``workload.threads``, ``policy.no_flush_clean_wrprotect``, ``run.rounds``) then set
fields of that composition; a grid value wins over the command line for the key it sets.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from study.config import GROUPS, Cell, ConfigError, SweepConfig, build_parts, compose
from study.config.validate import check_run, structured


@dataclass(frozen=True)
class GridCell:
    """A cell and where it came from: sub-grid index and the grid point (axis -> value)."""

    cell: Cell
    grid: int
    point: tuple[tuple[str, Any], ...]

    def point_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.point)


def expand(sweep: SweepConfig, overrides: list[str], conf_dir: Path | str | None = None) -> tuple[list[GridCell], int]:
    """Every cell of every sub-grid in grid order, duplicates dropped; and how many were dropped.

    Raises ConfigError naming the key and the grid point of the first cell that does not
    validate, so a sweep fails before it starts rather than half-way through.
    """
    bases: dict[tuple, dict] = {}
    cells: list[GridCell] = []
    seen: set[str] = set()
    duplicates = 0
    for index, grid in enumerate(sweep.grids):
        axes = list(grid.items())
        for values in itertools.product(*(list(v) for _, v in axes)):
            point = tuple((axis, _plain(v)) for (axis, _), v in zip(axes, values))
            try:
                cell = _build(point, overrides, conf_dir, bases)
            except ConfigError as err:
                where = " ".join(f"{k}={v}" for k, v in point)
                raise ConfigError(err.key, f"{err.allowed} (sweep.grids[{index}] cell {where})") from None
            if cell.cell_id in seen:
                duplicates += 1
                continue
            seen.add(cell.cell_id)
            cells.append(GridCell(cell, index, point))
    return cells, duplicates


def _build(point, overrides, conf_dir, bases) -> Cell:
    selection = tuple((k, v) for k, v in point if k in GROUPS)
    if selection not in bases:
        chosen = {k for k, _ in selection}
        # the grid's option replaces the command line's choice of the same group
        kept = [o for o in overrides if _group_of(o) not in chosen]
        cfg = compose(kept + [f"{k}={v}" for k, v in selection], conf_dir)
        bases[selection] = OmegaConf.to_container(cfg, resolve=True)
    data = copy.deepcopy(bases[selection])
    for key, value in point:
        if key not in GROUPS:
            _set(data, key, value)
    run = structured({**data, "sweep": None}).run if any(k.startswith("run.") for k, _ in point) else None
    if run is not None:
        check_run(run)
    else:
        run = _base_run(bases, selection, data)
    machine, workload, policy, kernel = build_parts(data["machine"], data["workload"], data["policy"], data["kernel"])
    return Cell(machine, workload, policy, run, kernel)


def _base_run(bases, selection, data):
    """The run node of a composition, checked once and shared by its cells."""
    key = ("run", selection)
    if key not in bases:
        bases[key] = check_run(structured({**data, "sweep": None}).run)
    return bases[key]


def _group_of(override: str) -> str | None:
    """``workload=uffd_wp`` -> ``workload``; dotted or other overrides -> None."""
    key = override.split("=", 1)[0].lstrip("+~")
    return key if key in GROUPS and "=" in override else None


def _set(data: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts; unknown keys stay for the builders to name."""
    *parents, leaf = dotted.split(".")
    node = data
    for i, part in enumerate(parents):
        child = node.get(part)
        if not isinstance(child, dict):
            if child is not None:
                raise ConfigError(".".join(parents[: i + 1]), f"is a value, not a mapping; cannot set {dotted}")
            child = node[part] = {}
        node = child
    node[leaf] = value


def _plain(value: Any) -> Any:
    """Grid values as plain Python (lists/dicts from OmegaConf become list/dict)."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value
