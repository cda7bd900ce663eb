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


def cells_table(sweep: str, rows: list[tuple[GridCell, CellResult]],
                summaries: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
    """One row per cell; NaN/empty where a knob or metric does not apply.

    ``summaries``: ``study.runner.stats.summarize`` of some cells' results by cell_id, worked
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


def replicates_table(rows: list[tuple[GridCell, CellResult]]) -> pd.DataFrame:
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


def calls_table(rows: list[tuple[GridCell, CellResult]]) -> pd.DataFrame:
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
