"""``python -m study measure [measure=NAME] [measure.KEY=VALUE ...]``: the workloads on this kernel.

Compiles the shipped C benchmark, runs the host grid of conf/measure/<NAME>.yaml (default:
``default``) and writes ``<out>/measure/<host>/`` in the sweep's table format: cells.parquet
(+ cells.csv), replicates.parquet (one replicate per trial), calls.parquet (per-call cycles)
and manifest.json (kernel, CPU, TSC, topology, PTI, virtualization, APIC, load average).
As root with tracefs (study/measure/trace.py), each trial also records the kernel's
tlb:tlb_flush and exceptions:page_fault_user events of the benchmark's threads during its
timed rounds: per cell and CPU role, each kind's count per flushing call (trace_* metrics);
without it one line says why and the rest is as before.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from study.cli import EXIT_OK, config_error, take_config_dir
from study.cli.common import parse
from study.errors import ConfigError
from study.measure.host import host_facts, loadavg, online_cpus

# numpy, pandas, scipy and Hydra load once the arguments are parsed: ``--help`` answers at once


def measure_overrides(overrides: list[str]) -> list[str]:
    """``measure=NAME`` selects conf/measure/NAME.yaml (added to the defaults: ``+measure``)."""
    chosen = [o for o in overrides if o.split("=", 1)[0] in ("measure", "+measure")]
    rest = [o for o in overrides if o not in chosen]
    name = chosen[-1].split("=", 1)[1] if chosen else "default"
    return [f"+measure={name}"] + rest


def load_config(overrides: list[str]):
    from omegaconf import OmegaConf

    from study.config import compose
    from study.measure.grid import measure_config

    cfg = compose(measure_overrides(overrides))
    return measure_config(OmegaConf.to_container(cfg.measure, resolve=True))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m study measure", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs"), metavar="DIR",
                        help="outputs directory; writes DIR/measure/<host>/ (default: %(default)s)")
    parser.add_argument("--host", default=None, metavar="NAME",
                        help="name of this machine in outputs and as machine=NAME (default: the hostname)")
    try:
        args = parse(parser, take_config_dir(argv))
        from study.measure import build as bench_build
        from study.measure.grid import expand
        from study.measure.machine import machine_from_host

        config = load_config(args.overrides)
        facts = host_facts()
        if args.host:
            facts.host = args.host
        machine = machine_from_host(facts)
        cells = expand(config, facts.cpus, machine)
        binary, build_info = bench_build.build()
    except ConfigError as err:
        return config_error(err)

    import pandas as pd
    from tqdm import tqdm

    from study.config import RunConfig
    from study.config.cell import Cell
    from study.measure import run as bench_run
    from study.measure import trace as tracing
    from study.measure.grid import HOST
    from study.measure.machine import UNMODELLED_FACTS
    from study.policies import STRICT
    from study.runner.grid import GridCell
    from study.results import tables
    from study.results.files import DirLock, recover

    start = time.monotonic()
    probe = bench_run.probe(binary)
    facts.tsc_hz = float(probe["tsc_hz"])
    overhead = float(probe["timer_overhead"])
    target = args.out / "measure" / machine.name
    before = loadavg()
    n_cpus = len(online_cpus())
    busy = config.busy_load * n_cpus
    print(f"measuring {len(cells)} cells on {machine.name} ({facts.cpu_model}, {facts.kernel_release}, "
          f"{n_cpus} CPUs{', virtual machine' if facts.hypervisor else ''}); load average {before}", flush=True)
    warned = False
    if before and before[0] > busy:
        print(f"warning: this machine is busy (1-minute load average {before[0]} > {busy:g}); the timings and "
              f"the TLB/CAL counts include other processes' effects", file=sys.stderr)
        warned = True
    results, skipped = [], {}
    with contextlib.ExitStack() as stack:
        avail, session = open_trace(stack, tracing, cells, config.rounds)
        if session is not None:
            print(f"tracing tlb:tlb_flush and exceptions:page_fault_user of the benchmark's threads during the timed "
                  f"rounds ({session.dir}, {session.kb} KiB per CPU, clock {session.clock})", flush=True)
        else:
            print(f"tracing off: {avail.why}; recording cycles and /proc/interrupts only", flush=True)
        for cell in tqdm(cells, desc="measure", unit="cell", file=sys.stderr, disable=None):
            why = bench_run.unavailable(cell, probe)
            if why is not None:
                skipped[cell.name] = why
                continue
            done = bench_run.run_cell(binary, cell, trials=config.trials, rounds=config.rounds, warmup=config.warmup,
                                      max_samples=config.max_samples, seed=config.seed, timer_overhead=overhead,
                                      nice=config.nice, outlier=int(config.outlier_us * 1e-6 * facts.tsc_hz),
                                      gap=int(config.off_cpu_gap_us * 1e-6 * facts.tsc_hz),
                                      spin_rate=float(probe.get("spin_rate", 0.0)), trace=session)
            if done.result is None:
                skipped[cell.name] = done.skipped
                continue
            results.append(done)
            now = loadavg()
            if not warned and now and now[0] > busy:
                tqdm.write(f"warning: the machine became busy while measuring (load average {now[0]} > {busy:g})",
                           file=sys.stderr)
                warned = True
        trace_facts = {"usable": session is not None, "why": avail.why, "tracefs": avail.path,
                       **(session.facts() if session is not None else {})}
    for name, why in skipped.items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    after = loadavg()
    wall = time.monotonic() - start
    notes = {m.cell.name: tracing.cell_trace(m.raw) for m in results} if trace_facts["usable"] else {}
    if notes:
        trace_facts["lost_events"] = int(sum(n.lost for n in notes.values()))
        trace_facts["cells_with_drops"] = {name: n.note() for name, n in notes.items() if n.flagged}

    run = RunConfig(replicates=config.trials, rounds=config.rounds, warmup_rounds=0, seed=config.seed,
                    batch_replicates=config.trials, adaptive=False, ci_target=0.01,
                    max_replicates=config.trials, max_samples=config.max_samples, output_dir=str(args.out))
    rows = [(GridCell(measured_cell(Cell, machine, m, STRICT, dataclasses.replace(run, rounds=m.result.rounds)), 0,
                      (("cell", m.cell.name),)), m.result) for m in results]
    sweep_name = f"measure:{config.name}"
    # the measurement's own columns, after the cell id
    extra = pd.DataFrame({"measure_cell": pd.array([m.cell.name for m in results], dtype="string"),
                          "measure_others": [m.cell.others for m in results],
                          "measure_cpus": [",".join(map(str, m.cell.cpus)) for m in results]})
    if notes:
        # per cell: "ok", or how many events its trials lost (their rates are left out)
        extra["measure_trace"] = pd.array([notes[m.cell.name].note() for m in results], dtype="string")
    manifest = {
        "measure": dataclasses.asdict(config),
        "host": facts.as_dict(),
        "machine": dataclasses.asdict(machine),
        "unmodelled_facts": list(UNMODELLED_FACTS),
        "timer_overhead_cycles": overhead,
        "spin_rate_per_cycle": float(probe.get("spin_rate", 0.0)),
        "userfaultfd": bench_run.userfaultfd(probe),
        "trace": trace_facts,
        "host_loops": {m.cell.loop: HOST[m.cell.loop].doc for m in results if m.cell.loop in HOST},
        "skipped": skipped,
        "build": build_info,
        "loadavg_before": before,
        "loadavg_after": after,
        "busy_warning": warned,
        "wall_seconds": round(wall, 1),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    entries = [{"name": m.cell.name, "cpus": list(m.cell.cpus), "others": m.cell.others,
                "spec": dataclasses.asdict(m.cell.workload), "loop": m.cell.loop, "knobs": dict(m.cell.knobs),
                "modelled": m.cell.modelled, "rounds": m.result.rounds} for m in results]
    meta = {"format_version": tables.FORMAT_VERSION, "sweep": sweep_name, "kind": "measurement",
            "host": machine.name}
    target.mkdir(parents=True, exist_ok=True)
    with DirLock(target, "--out"):
        recover(target)
        tables.write(target, sweep_name, rows, meta, manifest, entries=entries, extra_columns=extra)
    frame = pd.read_parquet(target / "cells.parquet")
    print(f"\n{'cell':40s} {'call':13s} {'cycles/call':>11s} {'95% CI':>17s} {'median':>8s} {'p99':>8s} "
          f"{'TLB/call':>8s} {'CAL/call':>8s} {'on-CPU':>6s}")
    for m in results:
        res = m.result
        for label in m.cell.workload.flush_labels():
            key = f"lat_{label}"
            if key not in res.metrics:
                continue
            row = frame[frame["measure_cell"] == m.cell.name].iloc[0]
            print(f"{m.cell.name:40s} {label:13s} {row[key + '.mean']:11.0f} "
                  f"[{row[key + '.ci_low']:7.0f},{row[key + '.ci_high']:7.0f}] {row[key + '.median']:8.0f} "
                  f"{row[key + '.p99']:8.0f} {row['tlb_per_call.mean']:8.3f} {row['cal_per_call.mean']:8.3f} "
                  f"{row.get('other_on_cpu_share.mean', float('nan')):6.3f}")
    if notes:
        print_events(frame, results, tracing, trace_facts)
    print_passes(frame, results)
    print(f"\nwrote {target}/ ({len(results)} cells, {wall:.0f} s; load average before {before}, after {after})")
    return EXIT_OK


def measured_cell(cell_class, machine, measured, policy, run):
    """The table row's cell: the engine's Cell of the workload the measured cell maps onto; for
    one of the benchmark's own loops (its loop is not the workload, or it has knobs) its
    identity adds the loop and its knobs, since two loops may map onto one engine workload
    (mprotect_vma with vma 1 and 9, and mprotect_toggle itself, are one mprotect_toggle)."""
    cell = measured.cell
    if cell.loop == cell.workload.name and not cell.knobs:
        return cell_class(machine, cell.workload, policy, run)
    return _host_loop_cell(cell_class)(machine, cell.workload, policy, run, loop=cell.loop, knobs=tuple(cell.knobs))


@functools.lru_cache(maxsize=None)
def _host_loop_cell(cell_class):
    @dataclasses.dataclass(frozen=True)
    class HostLoopCell(cell_class):
        """A measured cell of one of the benchmark's own loops."""

        loop: str = ""
        knobs: tuple = ()

        def identity(self, with_policy: bool = True) -> dict:
            ident = super().identity(with_policy)
            ident["host_loop"] = {"loop": self.loop, "knobs": dict(self.knobs)}
            return ident

    return HostLoopCell


def open_trace(stack, tracing, cells, rounds: int):
    """The tracefs session for the whole measurement (None when tracing is unusable) and why."""
    avail = tracing.availability()
    if not avail.usable:
        return avail, None
    kb = max(tracing.buffer_kb(c.rounds or rounds) for c in cells) if cells else tracing.MIN_BUFFER_KB
    try:
        return avail, stack.enter_context(tracing.Session(Path(avail.path), kb))
    except tracing.TraceError as err:
        return tracing.Availability(False, str(err), avail.path), None


# the event kinds' columns in the printed table, in order
SHORT = {"local_partial": "loc.p", "local_full": "loc.F", "local_none": "loc.0", "ipi_send": "send",
         "remote_partial": "rem.p", "remote_full": "rem.F", "remote_none": "rem.0", "switch_full": "sw.F",
         "switch_none": "sw.0", "wrong_cpu": "wrong", "fault_write_prot": "f.wP", "fault_write_notpresent": "f.wN",
         "fault_read_prot": "f.rP", "fault_read_notpresent": "f.rN"}


def _mean(row, metric: str) -> float:
    value = row.get(f"{metric}.mean", math.nan)
    return float(value) if value is not None else math.nan


def print_events(frame, results, tracing, facts: dict) -> None:
    from study.measure.run import FLUSH_LABELS

    print("\nkernel events per flushing call (tracepoints of the benchmark's threads; initiator = thread 0's CPU, "
          "others = the other threads' CPUs):")
    print("  " + "; ".join(f"{SHORT[k]} = {k}" for k in tracing.KINDS))
    print(f"{'cell':40s} {'role':9s} " + " ".join(f"{SHORT[k]:>6s}" for k in tracing.KINDS)
          + f" {'TLB row':>7s} {'lost':>5s}")
    for m in results:
        row = frame[frame["measure_cell"] == m.cell.name].iloc[0]
        for role in tracing.ROLES:
            if not tracing.roles(m.cell.cpus)[role]:
                continue
            rates = [_mean(row, tracing.metric_name(role, k)) for k in tracing.KINDS]
            tlb = sum(t["tlb"][c] for t in m.raw for c in tracing.roles(m.cell.cpus)[role] if c < len(t["tlb"]))
            calls = sum(b["n"] + b.get("out", 0) for t in m.raw for label, b in t["labels"].items()
                        if label in FLUSH_LABELS)
            lost = sum(t["trace"]["lost"] for t in m.raw if t.get("trace"))
            print(f"{m.cell.name:40s} {role:9s} " + " ".join(f"{r:6.3f}" for r in rates)
                  + f" {tlb / max(calls, 1):7.3f} {lost:5d}")
    drops = facts.get("cells_with_drops") or {}
    print(f"trace: {facts.get('lost_events', 0)} events lost" + (
        "; " + "; ".join(f"{k}: {v}" for k, v in drops.items()) if drops else " (no trial flagged)"))


def print_passes(frame, results) -> None:
    """The refill and lazy_wake cells: what the other thread loses after a flushing call."""
    rows = [m for m in results if "lat_ws_pass" in m.result.metrics]
    if not rows:
        return
    print("\nthe other thread's pass over its own buffer, right after a flushing call and quiet (cycles per pass; "
          "95% CI over trials):")
    print(f"{'cell':40s} {'after call':>10s} {'quiet':>8s} {'extra':>8s} {'95% CI':>17s} {'per flush':>9s} "
          f"{'95% CI':>17s} {'wake extra':>10s} {'95% CI':>17s}")
    for m in rows:
        row = frame[frame["measure_cell"] == m.cell.name].iloc[0]

        def ci(metric):
            return f"[{row.get(metric + '.ci_low', math.nan):7.0f},{row.get(metric + '.ci_high', math.nan):7.0f}]"

        print(f"{m.cell.name:40s} {_mean(row, 'lat_ws_pass'):10.0f} {_mean(row, 'lat_ws_pass_quiet'):8.0f} "
              f"{_mean(row, 'ws_pass_extra_cycles'):8.0f} {ci('ws_pass_extra_cycles')} "
              f"{_mean(row, 'ws_lost_cycles_per_flush'):9.0f} {ci('ws_lost_cycles_per_flush')} "
              f"{_mean(row, 'wake_extra_cycles'):10.0f} {ci('wake_extra_cycles')}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
