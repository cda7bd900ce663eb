"""Reading one sweep's output directory into data frames, with the input contract checked."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from study.analysis import schema
from study.errors import ConfigError
from study.runner.outdir import verify_files


@dataclass
class Sweep:
    """The tables of one sweep.  ``calls`` is read lazily: it is the big one."""

    name: str
    path: Path
    cells: pd.DataFrame
    replicates: pd.DataFrame
    manifest: dict = field(default_factory=dict)

    def calls(self, cell_ids: list) -> pd.DataFrame:
        """Per-call latency samples of the given cells only (empty if none were stored)."""
        path = self.path / "calls.parquet"
        if not path.exists() or not cell_ids:
            return pd.DataFrame(columns=list(schema.CALL_REQUIRED))
        table = pq.read_table(path, columns=list(schema.CALL_REQUIRED), filters=[("cell_id", "in", list(cell_ids))])
        return table.to_pandas()


def sweep_dir(out: Path, name: str) -> Path:
    return Path(out) / "sweep" / name


def load_sweep(out: Path, name: str) -> Sweep:
    """Load ``<out>/sweep/<name>/``; a missing, unreadable, empty or inconsistent input is a
    ConfigError naming the file.

    The set must be whole: the manifest (written last by the sweep) records the sha256 of
    every table, and a table that does not match it (a set mixed from two runs, a table
    rewritten or cut short) is refused rather than analysed.
    """
    path = sweep_dir(out, name)
    if not (path / "cells.parquet").exists():
        raise ConfigError("sweep", f"no sweep output at {path}/cells.parquet; "
                                   f"run `python -m study sweep sweep={name}` first")
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise ConfigError("sweep", f"{manifest_path} is missing: the sweep's table set is incomplete; "
                                   f"rerun `python -m study sweep sweep={name}`")
    manifest = read_json(manifest_path, "sweep")
    if not isinstance(manifest, dict):
        raise ConfigError("sweep", f"{manifest_path} is not a JSON object")
    verify_files(path, manifest, "sweep")
    cells = read_parquet(path / "cells.parquet")
    _require(cells, schema.CELL_REQUIRED, path / "cells.parquet")
    if cells.empty:
        raise ConfigError("sweep", f"{path / 'cells.parquet'} has no cells")
    reps_path = path / "replicates.parquet"
    if not reps_path.exists():
        raise ConfigError("sweep", f"{reps_path} is missing; the paired comparisons need per-replicate values")
    replicates = read_parquet(reps_path)
    # The text columns are stored dictionary-encoded (study.runner.tables.replicates_table) and
    # read as pandas categoricals: millions of rows, a few hundred distinct texts.  Readers
    # group with observed=True; study.api turns them into plain strings for users.
    _require(replicates, schema.REPLICATE_REQUIRED, reps_path)
    in_replicates = {str(c) for c in replicates["cell_id"].unique()}
    in_cells = set(cells["cell_id"].astype(str))
    unknown, missing = in_replicates - in_cells, in_cells - in_replicates
    if unknown or missing:
        raise ConfigError("sweep", f"{reps_path} does not belong to {path / 'cells.parquet'} "
                                   f"({len(unknown)} cells not in the cells table, {len(missing)} cells without "
                                   "replicates); rerun the sweep")
    if cells["cell_id"].duplicated().any():
        raise ConfigError("sweep", f"{path / 'cells.parquet'} lists a cell twice")
    return Sweep(name=name, path=path, cells=prepare_cells(cells), replicates=replicates, manifest=manifest)


def read_parquet(path: Path) -> pd.DataFrame:
    """A parquet table, or one ConfigError naming the file when it cannot be read."""
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as err:
        raise ConfigError("sweep", f"{path} cannot be read as parquet ({_first_line(err)}); rerun the sweep") from None


def read_json(path: Path, key: str):
    """A JSON file, or one ConfigError naming the file when it is unreadable or malformed."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(key, f"{path} cannot be read as JSON ({_first_line(err)})") from None


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:160]}" if text else type(err).__name__


def prepare_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Add the derived columns every later step relies on, in a stable row order."""
    cells = cells.copy()
    for knob in schema.WORKLOAD_KNOBS:
        if knob not in cells.columns:
            cells[knob] = float("nan")
        elif pd.api.types.is_numeric_dtype(cells[knob]):
            # nullable Int64 knobs become float with NaN: one missing-value convention for
            # every knob, and arrays that numpy can take as they are
            cells[knob] = cells[knob].astype("float64")
        else:
            cells[knob] = cells[knob].astype(object).where(cells[knob].notna(), float("nan"))
    for switch in schema.POLICY_COLUMNS:
        if switch in cells.columns:
            cells[switch] = cells[switch].fillna(False).astype(bool)
    if "machine_calibrated" not in cells.columns:
        cells["machine_calibrated"] = False
    cells["machine_calibrated"] = cells["machine_calibrated"].astype(bool)
    cells["role"] = cells.apply(schema.policy_role, axis=1)
    if "kernel" not in cells.columns:
        # a sweep from before kernels were named ran the RFC's base's flush path, but with
        # other page-state rules: say that it is unknown rather than guess
        cells["kernel"] = "unknown"
    cells["kernel"] = cells["kernel"].astype(str)
    cells["machine_label"] = [schema.machine_label(m, c, k) for m, c, k in
                              zip(cells["machine"], cells["machine_calibrated"], cells["kernel"])]
    return cells.sort_values(["pair_id", "cell_id"], kind="stable").reset_index(drop=True)


def _require(frame: pd.DataFrame, columns, path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError("sweep", f"{path} lacks columns {', '.join(missing)} "
                                   "(see the input contract in study/analysis/schema.py)")
