"""The sweep's result tables, built in grid order so that they never depend on scheduling.

``cells``: one row per cell (identity, config columns, metric summaries, counters);
``replicates``: one row per (cell, replicate, metric), for paired tests;
``calls``: one row per kept per-call latency, for distributions.
Every parquet file carries ``study`` metadata (format version, sweep, seed, config, versions).
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

from study.policies import PRESETS, SWITCHES
from study.runner.grid import GridCell
from study.runner.stats import STATS, metric_order, summarize
from study.runner.store import atomic_write
from study.workloads.result import COUNTERS, CellResult
from study.workloads.spec import WORKLOADS

FORMAT_VERSION = 1


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


def cells_table(sweep: str, rows: list[tuple[GridCell, CellResult]]) -> pd.DataFrame:
    """One row per cell; NaN/empty where a knob or metric does not apply."""
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
        record |= summarize(result)
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


def replicates_table(rows: list[tuple[GridCell, CellResult]]) -> pd.DataFrame:
    """Long table of per-replicate values: every metric, and ``count.C`` per round."""
    # Columns are gathered as arrays and built once: a frame per (cell, metric) is slow.  The
    # text columns are gathered as codes into their distinct values and expanded once into
    # Arrow strings: a repeated numpy unicode array per (cell, metric) costs 64 bytes a row.
    texts = {"cell_id": {}, "pair_id": {}, "policy": {}, "metric": {}}
    codes = {key: [] for key in texts}
    replicates, values = [], []
    for gc, result in rows:
        per_cell = {name: np.asarray(result.metrics[name], np.float64) for name in metric_order(result.metrics)}
        per_cell |= {f"count.{c}": np.asarray(v, np.float64) / result.rounds for c, v in result.counters.items()}
        for name, array in per_cell.items():
            n = array.size
            for key, text in (("cell_id", gc.cell.cell_id), ("pair_id", gc.cell.pair_id),
                              ("policy", gc.cell.policy.name), ("metric", name)):
                codes[key].append(np.full(n, texts[key].setdefault(text, len(texts[key])), np.int32))
            replicates.append(np.arange(n, dtype=np.int64))
            values.append(array)

    def text_column(key):
        # dictionary-encoded (a category per distinct text, in order of first appearance):
        # millions of rows hold a few hundred distinct texts, and parquet stores them as a
        # dictionary anyway; study.analysis.load reads them back as strings
        index = np.concatenate(codes[key]) if codes[key] else np.zeros(0, np.int32)
        return pd.Categorical.from_codes(index, categories=pd.Index(list(texts[key]), dtype="string"))

    def column(parts, dtype):
        return pd.array(np.concatenate(parts) if parts else np.array([], dtype=dtype), dtype=dtype)

    return pd.DataFrame({
        "cell_id": text_column("cell_id"), "pair_id": text_column("pair_id"),
        "policy": text_column("policy"), "replicate": column(replicates, "int64"),
        "metric": text_column("metric"), "value": column(values, "float64"),
    }, copy=False)


def calls_table(rows: list[tuple[GridCell, CellResult]]) -> pd.DataFrame:
    """Long table of the kept per-call latencies (cycles) of every label."""
    parts = [pd.DataFrame({"cell_id": gc.cell.cell_id, "label": label,
                           "latency": np.asarray(samples, np.int64)})
             for gc, result in rows for label, samples in result.samples.items()]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["cell_id", "label", "latency"])
    return frame.astype({"cell_id": "string", "label": "string", "latency": "int64"})


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
