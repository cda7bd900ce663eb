"""Reading one sweep's output directory into data frames, with the input contract checked."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from study.analysis import schema
from study.errors import ConfigError


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
    """Load ``<out>/sweep/<name>/``; a missing file or column is a ConfigError naming it."""
    path = sweep_dir(out, name)
    if not (path / "cells.parquet").exists():
        raise ConfigError("sweep", f"no sweep output at {path}/cells.parquet; "
                                   f"run `python -m study sweep sweep={name}` first")
    cells = pd.read_parquet(path / "cells.parquet")
    _require(cells, schema.CELL_REQUIRED, path / "cells.parquet")
    reps_path = path / "replicates.parquet"
    if not reps_path.exists():
        raise ConfigError("sweep", f"{reps_path} is missing; the paired comparisons need per-replicate values")
    replicates = pd.read_parquet(reps_path)
    _require(replicates, schema.REPLICATE_REQUIRED, reps_path)
    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    return Sweep(name=name, path=path, cells=prepare_cells(cells), replicates=replicates, manifest=manifest)


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
