"""A table set, written and read here only: the sweep's, a measurement's and the test fixtures'.

``cells``: one row per cell (identity, config columns, metric summaries, counters);
``replicates``: one row per (cell, replicate, metric), for paired tests;
``calls``: one row per kept per-call latency, for distributions;
``manifest.json``: what the set is, written last with the sha256 of every table (``write``),
and what its columns mean (``meaning``): the workloads it ran with their knobs, calls and
report hooks, the RFC switches and which are ideas, each cell's policy role, the metric and
counter units.  The analysis reads a sweep's meaning from there, never from today's code.
Rows are built in grid order, so they never depend on scheduling.  Every parquet file carries
``study`` metadata (format version, sweep, seed, config, versions, and each column's unit).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from study.errors import ConfigError
from study.policies import PATCHES, PRESETS, SWITCHES, merged_in, role
from study.results import metrics
from study.results.files import atomic_write, commit_files, verify_files
from study.results.summary import STATS, metric_order, summarize
from study.workloads.result import COUNTERS, CellResult
from study.workloads.spec import WORKLOADS

# 2: the manifest carries the set's meaning (workloads, switches, roles, units)
FORMAT_VERSION = 2
TABLES = ("cells.parquet", "cells.csv", "replicates.parquet", "calls.parquet")
MANIFEST = "manifest.json"
# A row of a set: anything with ``.cell`` (a study.config.Cell), ``.grid`` and ``.point`` (the
# runner's GridCell), beside its CellResult.


def workload_knobs() -> dict[str, type]:
    """Every knob of every workload, in declaration order, with its type."""
    knobs: dict[str, type] = {}
    for cls in WORKLOADS.values():
        for f in dataclasses.fields(cls):
            if f.name != "name":
                knobs.setdefault(f.name, type(f.default))
    return knobs


def policy_variant(policy) -> str:
    """The policy's name, plus the switches that differ from the preset of that name."""
    preset = PRESETS.get(policy.name)
    if preset is None:
        return policy.name
    diff = [f"{k}={str(v).lower()}" for k, v in policy.switches().items() if preset.switches()[k] != v]
    return f"{policy.name}[{','.join(diff)}]" if diff else policy.name


_DTYPES = {int: "Int64", float: "float64", bool: "boolean", str: "string"}


def cells_table(sweep: str, rows: list[tuple[Any, CellResult]],
                summaries: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
    """One row per cell; NaN/empty where a knob or metric does not apply.

    ``summaries``: ``study.results.summary.summarize`` of some cells' results by cell_id, worked
    out already (the sweep does it as each cell comes back); the others are summarized here.
    """
    summaries = summaries or {}
    knobs = workload_knobs()
    records, metric_names, counter_names, resolved_names = [], {}, dict.fromkeys(COUNTERS), {}
    for gc, result in rows:
        cell = gc.cell
        record: dict[str, Any] = {
            "cell_id": cell.cell_id,
            "pair_id": cell.pair_id,
            "sweep": sweep,
            "grid": gc.grid,
            "machine": cell.machine.name,
            "machine_calibrated": cell.machine.calibrated,
            "machine.dirty_walk": cell.machine.dirty_walk,
            "kernel": cell.kernel.name,
            "policy": cell.policy.name,
            "policy_variant": policy_variant(cell.policy),
        }
        record |= {f"policy.{k}": v for k, v in cell.policy.switches().items()}
        record["workload"] = cell.workload.name
        record |= {f"workload.{k}": getattr(cell.workload, k, None) for k in knobs}
        resolved = resolved_columns(cell)
        record |= resolved
        resolved_names.update(dict.fromkeys(resolved))
        record["replicates"] = result.replicates
        record["rounds"] = result.rounds
        summary = summaries.get(cell.cell_id)
        record |= summary if summary is not None else summarize(result)
        metric_names.update(dict.fromkeys(result.metrics))
        counter_names.update(dict.fromkeys(result.counters))
        records.append(record)
    head = (["cell_id", "pair_id", "sweep", "grid", "machine", "machine_calibrated", "machine.dirty_walk", "kernel",
             "policy", "policy_variant"]
            + [f"policy.{k}" for k in SWITCHES] + ["workload"] + [f"workload.{k}" for k in knobs]
            + [c for c in resolved_names if c not in ("machine.dirty_walk",)]
            + ["replicates", "rounds"])
    columns = head + [f"{m}.{s}" for m in metric_order(metric_names) for s in STATS]
    columns += [f"count.{c}" for c in counter_names if any(f"count.{c}" in r for r in records)]
    frame = pd.DataFrame.from_records(records, columns=columns)
    for knob, kind in knobs.items():
        frame[f"workload.{knob}"] = frame[f"workload.{knob}"].astype(_DTYPES.get(kind, "object"))
    for switch in SWITCHES:
        frame[f"policy.{switch}"] = frame[f"policy.{switch}"].astype("boolean")
    text = ["cell_id", "pair_id", "sweep", "machine", "machine.dirty_walk", "kernel", "policy", "policy_variant",
            "workload"]
    frame[text] = frame[text].astype("string")
    for col in resolved_names:
        if col != "machine.dirty_walk":
            frame[col] = _typed(frame[col])
    frame["machine_calibrated"] = frame["machine_calibrated"].astype(bool)
    for col in ("grid", "replicates", "rounds"):
        frame[col] = frame[col].astype("int64")
    for col in frame.columns:
        if col.endswith(".n"):
            frame[col] = frame[col].fillna(0).astype("int64")
        elif col.startswith("count.") or col.rpartition(".")[2] in STATS:
            frame[col] = frame[col].astype("float64")
    return frame


def resolved_columns(cell) -> dict[str, Any]:
    """The machine each cell ran (its facts and every event cost, in cycles) and its kernel's
    facts, as flat columns: ``machine.sockets``, ``machine.costs.invlpg``,
    ``machine.costs.ipi_deliver.socket``, ``kernel.release``, ``kernel.clean_anon_writable``..."""
    out: dict[str, Any] = {}
    for key, value in dataclasses.asdict(cell.machine).items():
        if key in ("name", "calibrated"):
            continue
        if key == "costs":
            for event, cost in value.items():
                if isinstance(cost, dict):
                    out |= {f"machine.costs.{event}.{cls}": v for cls, v in cost.items()}
                else:
                    out[f"machine.costs.{event}"] = cost
        else:
            out[f"machine.{key}"] = value
    out |= {f"kernel.{k}": v for k, v in dataclasses.asdict(cell.kernel).items() if k != "name"}
    return out


def _typed(column: pd.Series) -> pd.Series:
    """One parquet type per resolved column: boolean, integer, float or text."""
    values = [v for v in column if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if values and all(isinstance(v, (bool, np.bool_)) for v in values):
        return column.astype("boolean")
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return column.astype("Int64")
    if values and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
        return column.astype("float64")
    return column.map(lambda v: None if v is None else str(v)).astype("string")


def replicates_table(rows: list[tuple[Any, CellResult]]) -> pd.DataFrame:
    """Long table of per-replicate values: every metric, and ``count.C`` per round."""
    # One part per (cell, metric); its rows are built once for the whole table: the values
    # concatenated, the replicate numbers and the text columns' codes expanded from one entry
    # per part (np.repeat), never a small array per part.  The text columns are categoricals
    # (codes into their distinct values, in order of first appearance): millions of rows hold
    # a few hundred distinct texts, parquet stores them as a dictionary anyway, and
    # study.analysis.load reads them back as strings.
    texts = {"cell_id": {}, "pair_id": {}, "policy": {}, "metric": {}}
    codes = {key: [] for key in texts}
    sizes, values = [], []
    for gc, result in rows:
        cell = gc.cell
        per_cell = [(name, np.asarray(result.metrics[name], np.float64)) for name in metric_order(result.metrics)]
        per_cell += [(f"count.{c}", np.asarray(v, np.float64) / result.rounds) for c, v in result.counters.items()]
        fixed = [(key, texts[key].setdefault(text, len(texts[key])))
                 for key, text in (("cell_id", cell.cell_id), ("pair_id", cell.pair_id), ("policy", cell.policy.name))]
        metric = texts["metric"]
        for name, array in per_cell:
            for key, code in fixed:
                codes[key].append(code)
            codes["metric"].append(metric.setdefault(name, len(metric)))
            sizes.append(array.size)
            values.append(array)
    counts = np.asarray(sizes, dtype=np.int64)
    total = int(counts.sum())

    def text_column(key):
        categories = pd.Index(list(texts[key]), dtype="string")
        per_part = pd.Categorical.from_codes(np.asarray(codes[key], dtype=np.int64), categories=categories)
        # the codes in pandas' own (smallest) integer type, expanded to one per row
        return pd.Categorical.from_codes(np.repeat(per_part.codes, counts), dtype=per_part.dtype, validate=False)

    # replicate numbers, 0..size-1 within each part: a running sum of ones that drops back by
    # the previous part's size where a part starts (one array, filled in place: millions of rows)
    replicate = np.ones(total, dtype=np.int64)
    if total:
        replicate[0] = 0
        starts, drops = np.cumsum(counts)[:-1], counts[:-1]
        inside = starts < total  # empty parts at the end start past the last row
        np.subtract.at(replicate, starts[inside], drops[inside])
        np.cumsum(replicate, out=replicate)
    value = np.concatenate(values) if values else np.array([], dtype=np.float64)
    return pd.DataFrame({
        "cell_id": text_column("cell_id"), "pair_id": text_column("pair_id"),
        "policy": text_column("policy"), "replicate": replicate,
        "metric": text_column("metric"), "value": value,
    }, copy=False)


def calls_table(rows: list[tuple[Any, CellResult]]) -> pd.DataFrame:
    """Long table of the kept per-call latencies (cycles) of every label."""
    parts = [(gc.cell.cell_id, label, np.asarray(samples, np.int64))
             for gc, result in rows for label, samples in result.samples.items()]
    if not parts:
        frame = pd.DataFrame(columns=["cell_id", "label", "latency"])
        return frame.astype({"cell_id": "string", "label": "string", "latency": "int64"})
    # the text columns as Arrow strings with one chunk per (cell, label) part, as a
    # concatenation of one frame per part would hold them (Arrow keeps the chunks)
    return pd.DataFrame({"cell_id": _chunked_text([(cell_id, a.size) for cell_id, _, a in parts]),
                         "label": _chunked_text([(label, a.size) for _, label, a in parts]),
                         "latency": np.concatenate([a for _, _, a in parts])}, copy=False)


def _chunked_text(runs: list[tuple[str, int]]) -> pd.arrays.ArrowStringArray:
    """A ``string`` column holding each text ``count`` times, one Arrow chunk per run."""
    chunks = [pa.DictionaryArray.from_arrays(pa.array(np.zeros(count, np.int8)), pa.array([text], pa.large_string()))
              .cast(pa.large_string()) for text, count in runs]
    return pd.array(pa.chunked_array(chunks, type=pa.large_string()), dtype="string")


def write_parquet(frame: pd.DataFrame, path: Path, meta: dict[str, Any], atomic: bool = True) -> None:
    """Write ``frame`` with ``meta`` as the schema's ``study`` metadata (atomically unless
    ``atomic`` is false: a staging directory that is committed whole needs no temp names)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[b"study"] = json.dumps(meta, sort_keys=True).encode()
    table = table.replace_schema_metadata(schema_meta)
    if atomic:
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    else:
        pq.write_table(table, path)


def write_csv(frame: pd.DataFrame, path: Path, atomic: bool = True) -> None:
    if atomic:
        atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
    else:
        frame.to_csv(path, index=False)


def read_meta(path: Path) -> dict[str, Any]:
    """The ``study`` metadata of a table written by this module."""
    return json.loads(pq.read_schema(path).metadata[b"study"])


# --------------------------------------------------------------------------- the set


def meaning(cells) -> dict[str, Any]:
    """What the set's columns mean, from the code that wrote it: every workload it ran (its
    knobs with units and docs, its calls, its report hooks), the RFC switches (patch, title,
    whether an idea of the RFC), the metrics' and counters' units."""
    workloads, kernels = {}, {}
    for cell in cells:
        workloads.setdefault(cell.workload.name, type(cell.workload).describe())
        kernels.setdefault(cell.kernel.name, {"release": cell.kernel.release, "carries": merged_in(cell.kernel)})
    return {
        "workloads": dict(sorted(workloads.items())),
        "kernels": dict(sorted(kernels.items())),
        "switches": {p.name: {"patches": p.patches, "where": p.where, "title": p.title, "function": p.function,
                              "doc": p.doc, "idea": p.relaxed} for p in PATCHES},
        "ideas": [p.name for p in PATCHES if p.relaxed],
        "results": metrics.describe(),
    }


def cell_entry(cell, replicates: int) -> dict[str, Any]:
    """A cell's line in the manifest: its ids, names, policy role and replicates."""
    return {"cell_id": cell.cell_id, "pair_id": cell.pair_id, "machine": cell.machine.name,
            "kernel": cell.kernel.name, "workload": cell.workload.name, "policy": cell.policy.name,
            "role": role(cell.policy), "replicates": int(replicates)}


def write(directory: Path, sweep: str, rows: list[tuple[Any, CellResult]], meta: dict[str, Any],
          manifest: dict[str, Any], *, entries: list[dict] | None = None,
          summaries: dict[str, dict[str, float]] | None = None, extra_columns: pd.DataFrame | None = None) -> None:
    """Write the set of ``rows`` into ``directory`` whole (under its DirLock: study.results.files).

    ``meta``: what every table carries; ``manifest``: the set's own keys beside ``meta``, its
    meaning and its cells (``entries``: each cell's extra keys, beside ``cell_entry``);
    ``summaries``: per cell_id, summaries worked out already; ``extra_columns``: columns of the
    cells table's owner, inserted after ``cell_id`` (a measurement's host cells).
    """
    cells_frame = cells_table(sweep, rows, summaries)
    if extra_columns is not None:
        # in one concat: the cells table has hundreds of columns, inserting one by one fragments it
        extra_columns.index = cells_frame.index
        cells_frame = pd.concat([cells_frame.iloc[:, :1], extra_columns, cells_frame.iloc[:, 1:]], axis=1)
    entries = entries or [{} for _ in rows]

    def with_units(frame_meta: dict, units: dict) -> dict:
        return {**frame_meta, "units": units}

    def make_manifest(hashes: dict[str, str]) -> dict:
        return {**meta, **manifest, "meaning": meaning([r[0].cell for r in rows]),
                "cells": [{**cell_entry(gc.cell, result.replicates), **extra}
                          for (gc, result), extra in zip(rows, entries)],
                "tables": {"cells": "cells.parquet", "cells_csv": "cells.csv", "replicates": "replicates.parquet",
                           "calls": "calls.parquet"}}

    value_unit = "the unit of the row's metric (manifest meaning.results)"
    # the long tables are built when their file is written, and freed after it
    writers = {
        "cells.parquet": lambda path: write_parquet(cells_frame, path, with_units(meta, metrics.units(cells_frame.columns)),
                                                    atomic=False),
        "replicates.parquet": lambda path: write_parquet(replicates_table(rows), path,
                                                         with_units(meta, {"value": value_unit}), atomic=False),
        "calls.parquet": lambda path: write_parquet(calls_table(rows), path,
                                                    with_units(meta, {"latency": "cycles per call"}), atomic=False),
        "cells.csv": lambda path: write_csv(cells_frame, path, atomic=False),
    }
    commit_files(directory, writers, MANIFEST, make_manifest)


class TableSet:
    """A set read back and checked whole: its manifest, cells and replicates; calls on demand."""

    def __init__(self, path: Path, manifest: dict, cells: pd.DataFrame, replicates: pd.DataFrame):
        self.path, self.manifest, self.cells, self.replicates = path, manifest, cells, replicates

    @property
    def meaning(self) -> dict:
        return self.manifest["meaning"]

    def roles(self) -> dict[str, str]:
        """cell_id -> policy role, as the writer decided it."""
        return {c["cell_id"]: c["role"] for c in self.manifest.get("cells", [])}

    def calls(self, cell_ids: list, columns=("cell_id", "label", "latency")) -> pd.DataFrame:
        """Per-call latency samples of the given cells only (empty if none were stored)."""
        path = self.path / "calls.parquet"
        if not path.exists() or not len(cell_ids):
            return pd.DataFrame(columns=list(columns))
        table = pq.read_table(path, columns=list(columns), filters=[("cell_id", "in", list(cell_ids))])
        return table.to_pandas()


def read(path: Path, key: str, rerun: str, replicates: bool = True) -> TableSet:
    """The set at ``path``, checked whole: the manifest (written last) records the sha256 of
    every table, and a table that does not match it (a set mixed from two runs, a table
    rewritten or cut short), a manifest of another format, or replicates of other cells are
    refused with one ConfigError naming ``key`` and saying to ``rerun``.

    ``replicates=False``: the replicates table is hashed with the rest but not read (the set's
    ``replicates`` is None; ``read_replicates`` reads and checks it when it is wanted)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not (path / "cells.parquet").exists():
        raise ConfigError(key, f"no table set at {path}/cells.parquet; {rerun} first")
    if not manifest_path.is_file():
        raise ConfigError(key, f"{manifest_path} is missing: the table set is incomplete; {rerun}")
    manifest = _read_json(manifest_path, key)
    if not isinstance(manifest, dict):
        raise ConfigError(key, f"{manifest_path} is not a JSON object")
    verify_files(path, manifest, key)
    if manifest.get("format_version") != FORMAT_VERSION or not isinstance(manifest.get("meaning"), dict):
        raise ConfigError(key, f"{path} was written by another version of the results format "
                               f"({manifest.get('format_version')!r}, this code reads {FORMAT_VERSION}); {rerun}")
    cells = _read_parquet(path / "cells.parquet", key, rerun)
    if cells.empty:
        raise ConfigError(key, f"{path / 'cells.parquet'} has no cells")
    if cells["cell_id"].duplicated().any():
        raise ConfigError(key, f"{path / 'cells.parquet'} lists a cell twice")
    reps_path = path / "replicates.parquet"
    if not reps_path.exists():
        raise ConfigError(key, f"{reps_path} is missing; the paired comparisons need per-replicate values")
    in_cells = set(cells["cell_id"].astype(str))
    listed = {c.get("cell_id") for c in manifest.get("cells", [])}
    if listed != in_cells:
        raise ConfigError(key, f"{path}: the cells table and the manifest list different cells "
                               f"({len(in_cells)}, {len(listed)}); {rerun}")
    found = TableSet(path, manifest, cells, None)
    if replicates:
        found.replicates = read_replicates(found, key, rerun)
    return found


def read_replicates(found: TableSet, key: str, rerun: str) -> pd.DataFrame:
    """The set's replicates table, checked to hold exactly the cells of its cells table."""
    # the text columns are stored dictionary-encoded (replicates_table) and read as pandas
    # categoricals: millions of rows, a few hundred distinct texts; group with observed=True
    replicates = _read_parquet(found.path / "replicates.parquet", key, rerun)
    in_replicates = {str(c) for c in replicates["cell_id"].unique()} if "cell_id" in replicates else set()
    in_cells = set(found.cells["cell_id"].astype(str))
    if in_replicates != in_cells:
        raise ConfigError(key, f"{found.path}: the cells table, the replicates table and the manifest list different "
                               f"cells ({len(in_cells)}, {len(in_replicates)}, {len(in_cells)}); {rerun}")
    return replicates


def _read_parquet(path: Path, key: str, rerun: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as err:
        raise ConfigError(key, f"{path} cannot be read as parquet ({_first_line(err)}); {rerun}") from None


def _read_json(path: Path, key: str):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(key, f"{path} cannot be read as JSON ({_first_line(err)})") from None


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:160]}" if text else type(err).__name__
