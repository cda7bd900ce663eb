"""Reading one sweep's table set (study.results.tables) into the frames the analysis works on."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from study.analysis import schema
from study.errors import ConfigError
from study.results import tables


@dataclass
class Sweep:
    """The tables of one sweep and what they mean.  ``calls`` is read lazily: it is the big one."""

    name: str
    path: Path
    cells: pd.DataFrame
    replicates: pd.DataFrame
    manifest: dict = field(default_factory=dict)

    @property
    def meaning(self) -> schema.Meaning:
        return schema.Meaning(self.manifest.get("meaning", {}))

    def calls(self, cell_ids: list) -> pd.DataFrame:
        """Per-call latency samples of the given cells only (empty if none were stored)."""
        return tables.TableSet(self.path, self.manifest, self.cells, self.replicates).calls(
            cell_ids, schema.CALL_REQUIRED)


def sweep_dir(out: Path, name: str) -> Path:
    return Path(out) / "sweep" / name


def load_sweep(out: Path, name: str) -> Sweep:
    """Load ``<out>/sweep/<name>/``: the set checked whole (study.results.tables.read), the
    input contract of study/analysis/schema.py checked; a bad input is one ConfigError."""
    path = sweep_dir(out, name)
    found = tables.read(path, "sweep", f"run `python -m study sweep sweep={name}`")
    _require(found.cells, schema.CELL_REQUIRED, path / "cells.parquet")
    _require(found.replicates, schema.REPLICATE_REQUIRED, path / "replicates.parquet")
    cells = prepare_cells(found.cells, found.roles())
    return Sweep(name=name, path=path, cells=cells, replicates=found.replicates, manifest=found.manifest)


def read_json(path: Path, key: str):
    """A JSON file, or one ConfigError naming the file when it is unreadable or malformed."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        text = str(err).strip().splitlines()
        why = f"{type(err).__name__}: {text[0][:160]}" if text else type(err).__name__
        raise ConfigError(key, f"{path} cannot be read as JSON ({why})") from None


def prepare_cells(cells: pd.DataFrame, roles: dict[str, str]) -> pd.DataFrame:
    """Add the derived columns every later step relies on (the writer's policy roles, the
    machine label), in a stable row order."""
    cells = cells.copy()
    for knob in schema.knob_columns(cells):
        if pd.api.types.is_numeric_dtype(cells[knob]) and not pd.api.types.is_bool_dtype(cells[knob]):
            # nullable Int64 knobs become float with NaN: one missing-value convention for
            # every knob, and arrays that numpy can take as they are
            cells[knob] = cells[knob].astype("float64")
        else:
            cells[knob] = cells[knob].astype(object).where(cells[knob].notna(), float("nan"))
    for switch in schema.policy_columns(cells):
        cells[switch] = cells[switch].fillna(False).astype(bool)
    cells["machine_calibrated"] = cells["machine_calibrated"].astype(bool)
    missing = sorted(set(cells["cell_id"].astype(str)) - set(roles))
    if missing:
        raise ConfigError("sweep", f"the manifest gives no policy role for cell {missing[0]}; rerun the sweep")
    cells["role"] = [roles[str(c)] for c in cells["cell_id"]]
    cells["kernel"] = cells["kernel"].astype(str)
    cells["machine_label"] = [schema.machine_label(m, c, k) for m, c, k in
                              zip(cells["machine"], cells["machine_calibrated"], cells["kernel"])]
    return cells.sort_values(["pair_id", "cell_id"], kind="stable").reset_index(drop=True)


def _require(frame: pd.DataFrame, columns, path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError("sweep", f"{path} lacks columns {', '.join(missing)} "
                                   "(see the input contract in study/analysis/schema.py)")
