"""A synthetic sweep that follows the sweep's input contract, for tests and dry runs.

It is NOT the engine: latencies come from a few closed-form toy costs shaped like the
seed's table (a shootdown per remote CPU, a relaxed flush that skips it, spurious faults
that cost a full flush and the working set) so that every analysis step and plot has
something with a known answer to chew on: relaxed wins on the seed's loop, loses once
remote writes meet a large working set, and a madv_free range goes strict with
probability 1 - (1 - d)**k.
"""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd

from study.analysis import schema, stats
from study.runner.outdir import sha256_file
from study.policies import RELAXED, STRICT, SWITCHES, UNSAFE
from study.workloads import LABELS
from study.workloads.result import COUNTERS

MACHINE = "haswell_2s"
KERNEL = "rfc_base"
DISTANCE = {"smt": 0.6, "core": 1.0, "socket": 1.7}  # shootdown cost relative to another core
SHOOTDOWN = 2150.0
SYSCALL = 2400.0
FAULT = 1200.0
WALK = 40.0
FLUSH_FULL = 96.0
DIRTY_WALK = 550.0


def _policies(ablations: bool) -> list[dict]:
    rows = [dict(name="strict", **{s: getattr(STRICT, s) for s in SWITCHES}),
            dict(name="relaxed", **{s: getattr(RELAXED, s) for s in SWITCHES})]
    if ablations:
        for idea in schema.IDEAS:
            switches = {s: getattr(RELAXED, s) for s in SWITCHES}
            switches[idea] = False
            # the sweep keeps the preset's name for an ablation; its switches tell them apart
            rows.append(dict(name="relaxed", **switches))
        rows.append(dict(name="unsafe", **{s: getattr(UNSAFE, s) for s in SWITCHES}))
    return rows


def _settings(grid: str) -> list[dict]:
    base = dict(threads=2, placement="core", pages=1, dirty_ratio=1.0, working_set=0, lazy_share=0.0)
    toggle = dict(base, workload="mprotect_toggle", remote_access_rate=0.0, remote_write_share=0.0)
    out = []
    threads = (1, 2, 4) if grid == "small" else (1, 2, 4, 8)
    placements = ("core",) if grid == "small" else ("smt", "core", "socket")
    for t, p in product(threads, placements):
        out.append(dict(toggle, threads=t, placement=p))
    if grid != "small":
        for share, ws in product((0.0, 0.25, 0.5, 0.75, 1.0), (0, 64, 256, 1024)):
            out.append(dict(toggle, threads=4, remote_access_rate=0.5, remote_write_share=share, working_set=ws))
        for d, k in product((0.0, 0.1, 0.25, 0.5, 1.0), (1, 8)):
            out.append(dict(base, workload="madv_free", pages=k, dirty_ratio=d))
        for t in (2, 4, 8):
            out.append(dict(base, workload="uffd_wp", threads=t, pages=16, write_rate=0.5, writes_per_round=4,
                            fault_roundtrip=8000))
    return out


def _toy_means(s: dict, pol: dict) -> dict[str, float]:
    """Mean cycles per call (lat_*) and per round for one setting under one policy."""
    remote = s["threads"] - 1
    shoot = 0.0 if remote == 0 else SHOOTDOWN * DISTANCE[s["placement"]] * (1 + 0.45 * (remote - 1))
    relaxed_flush = 120.0 if remote else 0.0
    lat: dict[str, float] = {}
    stolen = 2 * 900.0 * remote if shoot else 0.0
    other = 0.0
    if s["workload"] == "mprotect_toggle":
        lat["mprotect_ro"] = SYSCALL + shoot * (0.93 if pol["relaxed_flush_on_upgrade"] and remote else 1.0)
        lat["mprotect_rw"] = SYSCALL + (relaxed_flush if pol["relaxed_flush_on_upgrade"] else shoot)
        lat["write"] = 5.0 + DIRTY_WALK
        if pol["relaxed_flush_on_upgrade"]:
            stolen /= 2
            # remote writes into the writable window find a stale read-only entry
            faults = remote * s["remote_access_rate"] * s["remote_write_share"]
            per_fault = FAULT + (FLUSH_FULL + s["working_set"] * WALK if pol["fix_spurious_fault"] else s["pages"] * FAULT)
            other = faults * per_fault
        if remote and s["remote_access_rate"]:
            lat["remote_access"] = 5.0 + other / max(remote * s["remote_access_rate"], 1e-9)
        calls = ("mprotect_ro", "mprotect_rw", "write")
    elif s["workload"] == "madv_free":
        strict_share = 1 - (1 - s["dirty_ratio"]) ** s["pages"] if pol["no_flush_clean_wrprotect"] else 1.0
        lat["madv_free"] = SYSCALL + shoot
        lat["mprotect_ro"] = SYSCALL + strict_share * shoot
        lat["mprotect_rw"] = SYSCALL + (relaxed_flush if pol["relaxed_flush_on_upgrade"] else shoot)
        lat["write"] = 5.0 + DIRTY_WALK * s["dirty_ratio"]
        calls = ("madv_free", "mprotect_ro", "mprotect_rw", "write")
    else:
        lat["uffd_protect"] = SYSCALL + shoot
        hint = pol["uffd_unprotect_mkdirty"]
        lat["uffd_resolve"] = s["fault_roundtrip"] + SYSCALL + (relaxed_flush if pol["relaxed_flush_on_upgrade"] else shoot) \
            + (0.0 if hint else FAULT + DIRTY_WALK)
        lat["uffd_write"] = 5.0 + (0.0 if hint else DIRTY_WALK * 0.2)
        calls = ("uffd_protect", "uffd_resolve", "uffd_write")
    initiator = sum(lat[c] for c in calls)
    return dict(lat=lat, initiator=initiator, other=other, stolen=stolen, shoot=shoot,
                strict_share_ro=(1 - (1 - s["dirty_ratio"]) ** s["pages"]) if (
                    s["workload"] == "madv_free" and pol["no_flush_clean_wrprotect"]) else 1.0)


def make_sweep(out: Path, name: str = "synthetic", grid: str = "full", replicates: int = 8,
               rounds: int = 1000, seed: int = 7, ablations: bool = True, samples: int = 200) -> Path:
    """Write ``<out>/sweep/<name>/`` with cells, replicates, calls and a manifest; return it."""
    path = Path(out) / "sweep" / name
    path.mkdir(parents=True, exist_ok=True)
    cell_rows, rep_rows, call_rows = [], [], []
    cell_id = 0
    for pair_id, s in enumerate(_settings(grid)):
        # common random numbers: one jitter draw per replicate shared by every policy
        crn = np.random.default_rng([seed, pair_id])
        shared = crn.normal(0.0, 0.03, replicates)
        for pol in _policies(ablations):
            own = np.random.default_rng([seed, pair_id, cell_id]).normal(0.0, 0.004, replicates)
            noise = np.exp(shared + own)
            toy = _toy_means(s, pol)
            values: dict[str, np.ndarray] = {}
            for label, mu in toy["lat"].items():
                values[f"lat_{label}"] = mu * noise
                relaxed_call = label in ("mprotect_rw", "uffd_resolve") and pol["relaxed_flush_on_upgrade"]
                share = toy["strict_share_ro"] if label == "mprotect_ro" else (
                    1.0 if toy["shoot"] and not relaxed_call else 0.0)
                draws = (crn.binomial(rounds, share, replicates) / rounds if 0 < share < 1
                         else np.full(replicates, share))
                values[f"strict_share_{label}"] = draws
            values["initiator_cycles_per_round"] = toy["initiator"] * noise
            values["other_cycles_per_round"] = toy["other"] * noise
            values["stolen_cycles_per_round"] = toy["stolen"] * noise
            values[schema.MAIN_METRIC] = sum(values[p] for p in schema.CYCLE_PARTS)
            counters = {c: np.full(replicates, float(toy["shoot"] > 0) * (s["threads"] - 1)) for c in COUNTERS}
            # the negative control lets a write land on a read-only page whenever another CPU runs
            unsafe = pol["unsafe_dirty_demote"]
            counters["violations"] = np.full(replicates, 0.1 * (s["threads"] - 1) if unsafe else 0.0)
            row = dict(cell_id=f"c{cell_id:04d}", pair_id=f"p{pair_id:03d}", sweep=name, machine=MACHINE,
                       machine_calibrated=False, kernel=KERNEL, policy=pol["name"],
                       **{f"policy.{k}": pol[k] for k in SWITCHES}, workload=s["workload"],
                       **{k: s.get(k.split(".", 1)[1], np.nan) for k in schema.WORKLOAD_KNOBS},
                       replicates=replicates, rounds=rounds)
            for metric, v in values.items():
                mean, low, high = stats.mean_ci(v)
                row.update({f"{metric}.mean": mean, f"{metric}.ci_low": low, f"{metric}.ci_high": high,
                            f"{metric}.median": float(np.median(v)), f"{metric}.p99": float(np.quantile(v, 0.99)),
                            f"{metric}.n": replicates})
                rep_rows += [dict(cell_id=row["cell_id"], pair_id=row["pair_id"], policy=pol["name"], replicate=r,
                                  metric=metric, value=float(x)) for r, x in enumerate(v)]
            for counter, v in counters.items():  # counters: mean per round, no interval
                row[f"count.{counter}"] = float(v.mean())
                rep_rows += [dict(cell_id=row["cell_id"], pair_id=row["pair_id"], policy=pol["name"], replicate=r,
                                  metric=f"count.{counter}", value=float(x)) for r, x in enumerate(v)]
            for label, mu in toy["lat"].items():
                lat = mu * np.exp(crn.normal(0.0, 0.05, samples))
                call_rows.append(pd.DataFrame(dict(cell_id=row["cell_id"], label=label, latency=lat)))
            cell_rows.append(row)
            cell_id += 1
    cells = pd.DataFrame(cell_rows)
    for label in LABELS:  # a label no cell called is still a column, all NaN
        for st in schema.STATS:
            for metric in (f"lat_{label}", f"strict_share_{label}"):
                if f"{metric}.{st}" not in cells.columns:
                    cells[f"{metric}.{st}"] = np.nan
    cells.to_parquet(path / "cells.parquet", index=False)
    cells.to_csv(path / "cells.csv", index=False)
    pd.DataFrame(rep_rows).to_parquet(path / "replicates.parquet", index=False)
    pd.concat(call_rows, ignore_index=True).to_parquet(path / "calls.parquet", index=False)
    # the keys the sweep's manifest has; durations only, no wall-clock time
    manifest = dict(format_version=1, kind="study.sweep", sweep=name, root_seed=seed,
                    description="synthetic tables for tests (toy costs, not the engine)",
                    config=dict(sweep=dict(name=name, grid=grid), run=dict(replicates=replicates, rounds=rounds),
                                machine=dict(name=MACHINE, calibrated=False, source="synthetic toy costs",
                                             sockets=2, cores_per_socket=12, smt=2)),
                    code_fingerprint="synthetic", versions=dict(study="synthetic"), git_revision=None,
                    overrides=[f"sweep={name}"], cells_computed=cell_id, cells_reused=0,
                    host=dict(platform="synthetic"), timings=dict(total_s=0.0))
    # like the sweep's manifest, it records the hash of every table of the set
    manifest["files"] = {f: sha256_file(path / f) for f in
                         ("cells.parquet", "cells.csv", "replicates.parquet", "calls.parquet")}
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path
