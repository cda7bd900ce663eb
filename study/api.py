"""The Python API: load a sweep's results as tidy pandas frames, run a cell or a sweep.

    import study
    res = study.load("outputs/sweep/quick")          # or study.load("outputs", sweep="quick")
    res.cells        # one row per cell: settings (machine, kernel, workload.*, policy.*), metrics
    res.replicates   # one row per (cell, replicate, metric), the cell's settings joined
    res.calls        # one row per kept per-call latency, settings joined
    res.cells.attrs["units"]["lat_mprotect_ro.mean"]   # 'cycles per call'

    cell = study.run_cell(["policy=relaxed", "workload.threads=4"])   # a CellResult, nothing written
    outcome = study.run_sweep(["sweep=quick", "ray.num_cpus=2"])      # writes outputs/sweep/quick/

Every bad key or file raises ``study.errors.ConfigError`` (``.key``, ``.allowed``).
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class Results:
    """One sweep's tables, tidy, with ``attrs["units"]`` on each frame."""

    name: str
    path: Path
    cells: pd.DataFrame
    replicates: pd.DataFrame
    calls: pd.DataFrame
    manifest: dict


def load(directory: str | Path, sweep: str | None = None) -> Results:
    """A sweep's results: ``load("outputs/sweep/quick")`` or ``load("outputs", sweep="quick")``.

    The set is checked as ``analyze`` checks it (every table must match the manifest's sha256).
    """
    from study.analysis.load import load_sweep

    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(str(directory), "no such directory; give a sweep directory (outputs/sweep/<name>) "
                                          "or an outputs directory")
    if sweep is None:
        if not (path / "manifest.json").exists() and (path / "sweep").is_dir():
            names = sorted(p.name for p in (path / "sweep").iterdir() if (p / "manifest.json").exists())
            if len(names) != 1:
                raise ConfigError("sweep", f"{path}/sweep holds {names or 'no sweeps'}; name one: "
                                           "study.load(dir, sweep=NAME)")
            sweep = names[0]
        else:
            sweep, path = path.name, path.parent.parent
    data = load_sweep(path, sweep)
    cells = data.cells.copy()
    settings = [c for c in SETTINGS if c in cells.columns]
    knobs = [c for c in cells.columns if c.startswith(("workload.", "policy.")) and c not in settings]
    joined = cells[["cell_id", *[c for c in settings if c != "pair_id"], *knobs]]
    replicates = data.replicates.drop(columns=[c for c in ("policy", "pair_id") if c in data.replicates.columns])
    for column in ("cell_id", "metric"):   # stored dictionary-encoded; plain text for users
        if isinstance(replicates[column].dtype, pd.CategoricalDtype):
            replicates[column] = replicates[column].astype("string")
    replicates = replicates.merge(cells[["cell_id", "pair_id"]], on="cell_id").merge(joined, on="cell_id")
    replicates = _units(replicates)
    replicates.attrs["units"]["value"] = "see the metric's unit: study.api.unit(metric)"
    calls = data.calls(cells["cell_id"].tolist()).merge(joined, on="cell_id")
    return Results(name=sweep, path=data.path, cells=_units(cells), replicates=replicates,
                   calls=_units(calls, {"latency": "cycles per call"}), manifest=data.manifest)


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
