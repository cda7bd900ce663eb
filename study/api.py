"""The Python API: load a sweep's results as tidy pandas frames, run a cell or a sweep.

    import study
    res = study.load("outputs/sweep/quick")          # or study.load("outputs", sweep="quick")
    res.cells        # one row per cell: settings (machine, kernel, workload.*, policy.*), metrics
    res.replicates   # one row per (cell, replicate, metric), the cell's settings joined (read when first used)
    res.calls        # one row per kept per-call latency, settings joined (read when first used)
    res.cells.attrs["units"]["lat_mprotect_ro.mean"]   # 'cycles per call'

    cell = study.run_cell(["policy=relaxed", "workload.threads=4"])   # a CellResult, nothing written
    outcome = study.run_sweep(["sweep=quick", "ray.num_cpus=2"])      # writes outputs/sweep/quick/

Every bad key or file raises ``study.errors.ConfigError`` (``.key``, ``.allowed``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from study.errors import ConfigError

# the cells table's setting columns joined onto the long tables
SETTINGS = ("machine", "machine_calibrated", "kernel", "workload", "policy", "policy_variant", "pair_id", "rounds")


def unit(column: str) -> str | None:
    """The unit of a column of the study's tables (None: an identifier or a setting)."""
    from study.results.metrics import unit as metric_unit

    return metric_unit(column)


def _units(frame: pd.DataFrame, extra: dict[str, str] | None = None) -> pd.DataFrame:
    units = {c: u for c in frame.columns if (u := unit(str(c)))}
    frame.attrs["units"] = {**units, **(extra or {})}
    return frame


class Results:
    """One sweep's tables, tidy, with ``attrs["units"]`` on each frame.

    ``cells`` is read by ``load``; ``replicates`` and ``calls`` (millions of rows on a large
    sweep) are read, checked and joined with the cells' settings when first used, and kept."""

    def __init__(self, name: str, path: Path, cells: pd.DataFrame, manifest: dict, found):
        self.name, self.path, self.cells, self.manifest = name, path, cells, manifest
        self._found = found
        self._replicates: pd.DataFrame | None = None
        self._calls: pd.DataFrame | None = None

    def _joined(self) -> pd.DataFrame:
        cells = self.cells
        settings = [c for c in SETTINGS if c in cells.columns]
        knobs = [c for c in cells.columns if c.startswith(("workload.", "policy.")) and c not in settings]
        return cells[["cell_id", *[c for c in settings if c != "pair_id"], *knobs]]

    @property
    def replicates(self) -> pd.DataFrame:
        if self._replicates is None:
            from study.analysis import schema
            from study.analysis.load import _require
            from study.results.tables import read_replicates

            data = read_replicates(self._found, "sweep", f"rerun `python -m study sweep sweep={self.name}`")
            _require(data, schema.REPLICATE_REQUIRED, self.path / "replicates.parquet")
            data = data.drop(columns=[c for c in ("policy", "pair_id") if c in data.columns])
            for column in ("cell_id", "metric"):   # stored dictionary-encoded; plain text for users
                if isinstance(data[column].dtype, pd.CategoricalDtype):
                    data[column] = data[column].astype("string")
            data = data.merge(self.cells[["cell_id", "pair_id"]], on="cell_id").merge(self._joined(), on="cell_id")
            data = _units(data)
            data.attrs["units"]["value"] = "see the metric's unit: study.api.unit(metric)"
            self._replicates = data
        return self._replicates

    @property
    def calls(self) -> pd.DataFrame:
        if self._calls is None:
            from study.analysis import schema

            calls = self._found.calls(self.cells["cell_id"].tolist(), schema.CALL_REQUIRED)
            self._calls = _units(calls.merge(self._joined(), on="cell_id"), {"latency": "cycles per call"})
        return self._calls


def load(directory: str | Path, sweep: str | None = None) -> Results:
    """A sweep's results: ``load("outputs/sweep/quick")`` or ``load("outputs", sweep="quick")``.

    The set is checked as ``analyze`` checks it (every table must match the manifest's sha256).
    """
    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(str(directory), "no such directory; give a sweep directory (outputs/sweep/<name>) "
                                          "or an outputs directory")
    from study.analysis import schema
    from study.analysis.load import _require, prepare_cells, sweep_dir
    from study.results import tables

    if sweep is None:
        if not (path / "manifest.json").exists() and (path / "sweep").is_dir():
            names = sorted(p.name for p in (path / "sweep").iterdir() if (p / "manifest.json").exists())
            if len(names) != 1:
                raise ConfigError("sweep", f"{path}/sweep holds {names or 'no sweeps'}; name one: "
                                           "study.load(dir, sweep=NAME)")
            sweep, where = names[0], sweep_dir(path, names[0])
        else:
            # a sweep directory itself, wherever it lives (a copy, another machine's run)
            sweep, where = path.name, path
    else:
        where = sweep_dir(path, sweep)
    found = tables.read(where, "sweep", f"run `python -m study sweep sweep={sweep}`", replicates=False)
    _require(found.cells, schema.CELL_REQUIRED, where / "cells.parquet")
    return Results(sweep, where, _units(prepare_cells(found.cells, found.roles())), found.manifest, found)


def run_cell(overrides: list[str] | tuple[str, ...] = ()):
    """Simulate one cell (``python -m study run``'s cell) and return its CellResult; writes nothing."""
    from study.config import build_cell
    from study.config import compose
    from study.runner.replicate import run_cell as _run

    return _run(build_cell(compose(list(overrides))))


def run_sweep(overrides: list[str] | tuple[str, ...] = (), *, grid: dict[str, list] | None = None,
              progress: bool = False):
    """Run a sweep (``python -m study sweep``) and return its Outcome (``.directory`` to load).

    ``grid={"workload.threads": [1, 2], "policy": ["strict", "relaxed"]}`` is the ``-m`` sub-grid.
    """
    from study.runner import plan, run

    return run(plan(list(overrides), grid=grid), progress=progress)
