"""A synthetic sweep written through the results format (study.results.tables), for tests.

It is NOT the engine: latencies come from a few closed-form toy costs shaped like the
seed's table (a shootdown per remote CPU, a relaxed flush that skips it, spurious faults
that cost a full flush and the working set) so that every analysis step and plot has
something with a known answer to chew on: relaxed wins on the seed's loop, loses once
remote writes meet a large working set, and a madv_free range goes strict with
probability 1 - (1 - d)**k.  The cells are real cells (machine, kernel, workload and policy
objects, their identities), their results toy CellResults, and the set is written by the
same writer as a sweep's.
"""

from __future__ import annotations

import dataclasses
from itertools import product
from pathlib import Path

import numpy as np

from study.config import Cell, RunConfig
from study.engine.machine import Machine
from study.policies import IDEAS, RELAXED, RFC_BASE, STRICT, UNSAFE, without
from study.results import files, tables
from study.runner.grid import GridCell
from study.runner.sweep import resolved_parts
from study.workloads import WORKLOADS
from study.workloads.result import COUNTERS, CellResult

CYCLE_PARTS = ("initiator_cycles_per_round", "other_cycles_per_round", "stolen_cycles_per_round")


MACHINE = Machine(name="haswell_2s", calibrated=False, source="synthetic toy costs", sockets=2, cores_per_socket=12,
                  smt=2)
DISTANCE = {"smt": 0.6, "core": 1.0, "socket": 1.7}  # shootdown cost relative to another core
SHOOTDOWN = 2150.0
SYSCALL = 2400.0
FAULT = 1200.0
WALK = 40.0
FLUSH_FULL = 96.0
DIRTY_WALK = 550.0
KERNEL_SHOOTDOWN_SCALE = 1.6


def _policies(ablations: bool) -> list:
    rows = [STRICT, RELAXED]
    if ablations:
        # the sweep keeps the preset's name for an ablation; its switches tell them apart
        rows += [without(RELAXED, idea) for idea in IDEAS] + [UNSAFE]
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


def _toy_means(s: dict, pol, shootdown: float = SHOOTDOWN) -> dict[str, float]:
    """Mean cycles per call (lat_*) and per round for one setting under one policy."""
    remote = s["threads"] - 1
    shoot = 0.0 if remote == 0 else shootdown * DISTANCE[s["placement"]] * (1 + 0.45 * (remote - 1))
    relaxed_flush = 120.0 if remote else 0.0
    lat: dict[str, float] = {}
    stolen = 2 * 900.0 * remote if shoot else 0.0
    other = 0.0
    if s["workload"] == "mprotect_toggle":
        lat["mprotect_ro"] = SYSCALL + shoot * (0.93 if pol.relaxed_flush_on_upgrade and remote else 1.0)
        lat["mprotect_rw"] = SYSCALL + (relaxed_flush if pol.relaxed_flush_on_upgrade else shoot)
        lat["write"] = 5.0 + DIRTY_WALK
        if pol.relaxed_flush_on_upgrade:
            stolen /= 2
            # remote writes into the writable window find a stale read-only entry
            faults = remote * s["remote_access_rate"] * s["remote_write_share"]
            per_fault = FAULT + (FLUSH_FULL + s["working_set"] * WALK if pol.fix_spurious_fault else s["pages"] * FAULT)
            other = faults * per_fault
        if remote and s["remote_access_rate"]:
            lat["remote_access"] = 5.0 + other / max(remote * s["remote_access_rate"], 1e-9)
        calls = ("mprotect_ro", "mprotect_rw", "write")
    elif s["workload"] == "madv_free":
        strict_share = 1 - (1 - s["dirty_ratio"]) ** s["pages"] if pol.no_flush_clean_wrprotect else 1.0
        lat["madv_free"] = SYSCALL + shoot
        lat["mprotect_ro"] = SYSCALL + strict_share * shoot
        lat["mprotect_rw"] = SYSCALL + (relaxed_flush if pol.relaxed_flush_on_upgrade else shoot)
        lat["write"] = 5.0 + DIRTY_WALK * s["dirty_ratio"]
        calls = ("madv_free", "mprotect_ro", "mprotect_rw", "write")
    else:
        lat["uffd_protect"] = SYSCALL + shoot
        hint = pol.uffd_unprotect_mkdirty
        lat["uffd_resolve"] = s["fault_roundtrip"] + SYSCALL + (relaxed_flush if pol.relaxed_flush_on_upgrade else shoot) \
            + (0.0 if hint else FAULT + DIRTY_WALK)
        lat["uffd_write"] = 5.0 + (0.0 if hint else DIRTY_WALK * 0.2)
        calls = ("uffd_protect", "uffd_resolve", "uffd_write")
    initiator = sum(lat[c] for c in calls)
    return dict(lat=lat, initiator=initiator, other=other, stolen=stolen, shoot=shoot,
                strict_share_ro=(1 - (1 - s["dirty_ratio"]) ** s["pages"]) if (
                    s["workload"] == "madv_free" and pol.no_flush_clean_wrprotect) else 1.0)


def _spec(s: dict):
    """The setting's workload as the workload's own class."""
    cls = WORKLOADS[s["workload"]]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in s.items() if k in names and k != "workload"})


def make_sweep(out: Path, name: str = "synthetic", grid: str = "full", replicates: int = 8,
               rounds: int = 1000, seed: int = 7, ablations: bool = True, samples: int = 200,
               kernels=(RFC_BASE,)) -> Path:
    """Write ``<out>/sweep/<name>/`` with cells, replicates, calls and a manifest; return it.

    With more than one kernel every setting runs on each, the second kernel's shootdowns
    costing ``KERNEL_SHOOTDOWN_SCALE`` times the first's (a toy difference that a figure
    pooling the two would average away)."""
    path = Path(out) / "sweep" / name
    run = RunConfig(replicates=replicates, rounds=rounds, warmup_rounds=0, seed=seed, batch_replicates=replicates,
                    adaptive=False, ci_target=0.01, max_replicates=replicates, max_samples=samples,
                    output_dir=str(out))
    rows = []
    for (k_index, kernel), (pair, s) in product(enumerate(kernels), enumerate(_settings(grid))):
        workload = _spec(s).validate(MACHINE)
        # common random numbers: one jitter draw per replicate shared by every policy
        crn = np.random.default_rng([seed, pair] + ([k_index] if k_index else []))
        shared = crn.normal(0.0, 0.03, replicates)
        for k, pol in enumerate(_policies(ablations)):
            noise = np.exp(shared + np.random.default_rng([seed, pair, k]).normal(0.0, 0.004, replicates))
            toy = _toy_means(s, pol, SHOOTDOWN * KERNEL_SHOOTDOWN_SCALE ** k_index)
            result = CellResult(replicates=replicates, rounds=rounds)
            for label, mu in toy["lat"].items():
                result.metrics[f"lat_{label}"] = mu * noise
                relaxed_call = label in ("mprotect_rw", "uffd_resolve") and pol.relaxed_flush_on_upgrade
                share = toy["strict_share_ro"] if label == "mprotect_ro" else (
                    1.0 if toy["shoot"] and not relaxed_call else 0.0)
                result.metrics[f"strict_share_{label}"] = (crn.binomial(rounds, share, replicates) / rounds
                                                           if 0 < share < 1 else np.full(replicates, share))
                result.samples[label] = np.rint(mu * np.exp(crn.normal(0.0, 0.05, samples))).astype(np.int64)
            for part, key in zip(CYCLE_PARTS, ("initiator", "other", "stolen")):
                result.metrics[part] = toy[key] * noise
            result.metrics["total_cycles_per_round"] = sum(result.metrics[p] for p in CYCLE_PARTS)
            per_round = {c: np.full(replicates, float(toy["shoot"] > 0) * (s["threads"] - 1)) for c in COUNTERS}
            # the negative control lets a write land on a read-only page whenever another CPU runs
            per_round["violations"] = np.full(replicates, 0.1 * (s["threads"] - 1) if pol.unsafe_dirty_demote else 0.0)
            result.counters = {c: np.rint(v * rounds).astype(np.int64) for c, v in per_round.items()}
            point = (("setting", pair),) + ((("kernel", kernel.name),) if k_index else ())
            rows.append((GridCell(Cell(MACHINE, workload, pol, run, kernel), 0, point), result))
    cells = [gc.cell for gc, _ in rows]
    resolved, keys = resolved_parts(cells)
    meta = {"format_version": tables.FORMAT_VERSION, "kind": "study.sweep", "sweep": name, "root_seed": seed,
            "config": {"sweep": {"name": name, "grid": grid}, "run": dataclasses.asdict(run),
                       "machine": dataclasses.asdict(MACHINE)},
            "code_fingerprint": "synthetic", "versions": {"study": "synthetic"}}
    manifest = {"description": "synthetic tables for tests (toy costs, not the engine)",
                "overrides": [f"sweep={name}"], "duplicates_dropped": 0, "resolved": resolved}
    entries = [{"grid": 0, "point": dict(gc.point), "resolved": keys[gc.cell.cell_id]} for gc, _ in rows]
    path.mkdir(parents=True, exist_ok=True)
    with files.DirLock(path, "synthetic"):
        tables.write(path, name, rows, meta, manifest, entries=entries)
    return path
