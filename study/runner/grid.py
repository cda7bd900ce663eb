"""Expand a sweep's sub-grids into validated cells, before any work is done.

A sub-grid is a product of axes.  An axis ``machine``/``kernel``/``workload``/``policy`` names a group
option (a yaml file), which Hydra composes together with the command line's overrides, so
``workload.pages=4`` on the command line applies to whichever workload a cell selects.
Dotted axes (``workload.threads``, ``policy.no_flush_clean_wrprotect``, ``run.rounds``) then set
fields of that composition; a grid value wins over the command line for the key it sets.
"""

from __future__ import annotations

import itertools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from study.config import GROUPS, Cell, ConfigError, SweepConfig, build_parts, compose
from study.config.settings import LimitsConfig, RunConfig
from study.config.validation import resolved


@dataclass(frozen=True)
class GridCell:
    """A cell and where it came from: sub-grid index and the grid point (axis -> value)."""

    cell: Cell
    grid: int
    point: tuple[tuple[str, Any], ...]

    def point_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.point)


# Grids larger than this show a progress bar while they are expanded and validated.
PROGRESS_CELLS = 2000


def grid_size(sweep: SweepConfig) -> int:
    """Grid points of every sub-grid (before duplicates are dropped), without expanding them."""
    return sum(math.prod(len(list(v)) for v in grid.values()) for grid in sweep.subgrids())


def check_overrides(sweep: SweepConfig, overrides: list[str], warnings: list[str] | None = None) -> None:
    """A command-line choice that a grid axis would silently replace.

    A group choice (``policy=relaxed``) under a grid with a ``policy`` axis is an error: the
    user asked for one policy and would get the grid's.  A dotted value
    (``workload.threads=4``) under a ``workload.threads`` axis is a warning: the grid's values win.
    """
    for override in overrides:
        key = _override_key(override)
        if "=" not in override or key.startswith("sweep") or key.startswith("hydra"):
            continue
        for index, grid in enumerate(sweep.subgrids()):
            if key not in grid:
                continue
            if key in GROUPS:
                raise ConfigError(f"sweep.grids[{index}].{key}",
                                  f"the grid chooses {key} itself, so the command line's {override!r} would be "
                                  f"ignored; drop it, or override the axis: 'sweep.grids[{index}].{key}=[...]'")
            if warnings is not None:
                warnings.append(f"{override!r} is replaced by the grid's values of sweep.grids[{index}].{key} "
                                f"({list(grid[key])})")


def expand(sweep: SweepConfig, overrides: list[str], conf_dir: Path | str | None = None,
           limits: LimitsConfig | None = None, warnings: list[str] | None = None) -> tuple[list[GridCell], int]:
    """Every cell of every sub-grid in grid order, duplicates dropped; and how many were dropped.

    Raises ConfigError naming the key and the grid point of the first cell that does not
    validate, so a sweep fails before it starts rather than half-way through.  A grid of
    more than ``sweep.max_cells`` points is refused before it is expanded.
    """
    total = grid_size(sweep)
    if total > sweep.max_cells:
        raise ConfigError("sweep.max_cells", f"the grid has {total} cells, more than sweep.max_cells="
                                             f"{sweep.max_cells}; set sweep.max_cells={total} to plan it anyway")
    check_overrides(sweep, overrides, warnings)
    bases: dict[tuple, dict] = {}
    cells: list[GridCell] = []
    seen: set[str] = set()
    duplicates = 0
    bar = None
    if total > PROGRESS_CELLS:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="cell", desc="planning", file=sys.stderr, mininterval=0.5)
    try:
        for index, grid in enumerate(sweep.subgrids()):
            axes = list(grid.items())
            for values in itertools.product(*(list(v) for _, v in axes)):
                point = tuple((axis, canonical_number(_plain(v))) for (axis, _), v in zip(axes, values))
                try:
                    cell = _build(point, overrides, conf_dir, bases, limits)
                except ConfigError as err:
                    where = " ".join(f"{k}={v}" for k, v in point)
                    raise ConfigError(_grid_key(err.key, index, point),
                                      f"{err.allowed} (sweep.grids[{index}] cell {where})") from None
                if bar is not None:
                    bar.update(1)
                if cell.cell_id in seen:
                    duplicates += 1
                    continue
                seen.add(cell.cell_id)
                cells.append(GridCell(cell, index, point))
    finally:
        if bar is not None:
            bar.close()
    return cells, duplicates


def _grid_key(key: str, index: int, point) -> str:
    """The key to name for an error in a grid cell: the grid's axis when the axis set it."""
    for axis, _ in point:
        if key == axis or (axis in GROUPS and key.split(".", 1)[0] == axis and key in (axis, f"{axis}.name")):
            return f"sweep.grids[{index}].{axis}"
    return key


def canonical_number(value: Any) -> Any:
    """One spelling per number before it becomes part of a cell: -0.0 is 0.0."""
    if isinstance(value, float) and value == 0.0:
        return 0.0
    if isinstance(value, list):
        return [canonical_number(v) for v in value]
    if isinstance(value, dict):
        return {k: canonical_number(v) for k, v in value.items()}
    return value


def _build(point, overrides, conf_dir, bases, limits=None) -> Cell:
    selection = tuple((k, v) for k, v in point if k in GROUPS)
    if selection not in bases:
        chosen = {k for k, _ in selection}
        # the grid's option replaces the command line's choice of the same group (which
        # check_overrides has refused already for a sweep run from the command line)
        kept = [o for o in overrides if _group_of(o) not in chosen]
        cfg = compose(kept + [f"{k}={v}" for k, v in selection], conf_dir)
        bases[selection] = resolved(cfg)
    # the composition is shared by the selection's cells: a cell copies only the mappings its
    # dotted axes change (nothing downstream modifies the data it is given)
    data = dict(bases[selection])
    for key, value in point:
        if key not in GROUPS:
            _set(data, key, value)
    if any(k.startswith("run.") for k, _ in point):
        run = RunConfig.from_dict(data["run"], "run")
    else:  # the composition's run node, built once and shared by its cells
        if ("run", selection) not in bases:
            bases[("run", selection)] = RunConfig.from_dict(data["run"], "run")
        run = bases[("run", selection)]
    machine, workload, policy, kernel = build_parts(data["machine"], data["workload"], data["policy"], data["kernel"])
    if limits is not None:
        limits.check_cell(machine, workload, run)
    return Cell(machine, workload, policy, run, kernel)


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _group_of(override: str) -> str | None:
    """``workload=uffd_wp`` -> ``workload``; dotted or other overrides -> None."""
    key = override.split("=", 1)[0].lstrip("+~")
    return key if key in GROUPS and "=" in override else None


def _set(data: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts, copying each mapping on the way (``data`` itself is the
    caller's own; the mappings under it may be shared); unknown keys stay for the builders to name."""
    *parents, leaf = dotted.split(".")
    node = data
    for i, part in enumerate(parents):
        child = node.get(part)
        if not isinstance(child, dict):
            if child is not None:
                raise ConfigError(".".join(parents[: i + 1]), f"is a value, not a mapping; cannot set {dotted}")
            child = {}
        else:
            child = dict(child)
        node[part] = child
        node = child
    node[leaf] = value


def _plain(value: Any) -> Any:
    """Grid values as plain Python (lists/dicts from OmegaConf become list/dict)."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value
