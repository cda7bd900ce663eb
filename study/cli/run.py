"""``python -m study run [overrides]``: simulate one cell and print its latencies and counters.

    python -m study run policy=relaxed workload.threads=4 workload.placement=socket
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from study.cli import command, config_error
from study.cli.common import Parser, parse, write_json_atomic
from study.errors import ConfigError


@command(hydra=True)
def main(argv: list[str]) -> int:
    parser = Parser(prog="python -m study run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    try:
        args = parse(parser, argv)
        from study.config import build_cell, compose
        from study.results.files import check_output_dir

        cell = build_cell(compose(args.overrides))
        check_output_dir(Path(cell.run.output_dir) / "run", "run.output_dir")  # before the work
    except ConfigError as err:
        return config_error(err)

    # the engine and scipy load only now: --help and bad input answer at once
    from study.runner.replicate import run_cell
    from study.results.summary import summarize

    m, w, p, r = cell.machine, cell.workload, cell.policy, cell.run
    start = time.perf_counter()
    result = run_cell(cell)
    elapsed = time.perf_counter() - start
    row = summarize(result)
    note = "" if m.calibrated else " (UNCALIBRATED preset)"
    print(f"cell {cell.cell_id}: machine {m.name}{note} (dirty_walk {m.dirty_walk}), kernel {cell.kernel.name}, "
          f"workload {w.name}, policy {p.name}")
    print(f"  {dataclasses.asdict(w)}")
    print(f"  {result.replicates} replicates x {result.rounds} rounds, seed {r.seed}, {elapsed:.1f} s\n")
    print(f"{'metric (cycles)':32s} {'mean':>10s} {'95% CI':>23s} {'median':>9s} {'p99':>9s}")
    names = sorted({k.rsplit('.', 1)[0] for k in row if not k.startswith("count.")},
                   key=lambda k: (not k.startswith("lat_"), k))
    for name in names:
        print(f"{name:32s} {row[name + '.mean']:10.1f} [{row[name + '.ci_low']:9.1f}, {row[name + '.ci_high']:9.1f}]"
              f" {row[name + '.median']:9.1f} {row[name + '.p99']:9.1f}")
    print("\nevents per round (mean per replicate):")
    counts = {k[6:]: v for k, v in row.items() if k.startswith("count.")}
    print("  " + ", ".join(f"{k} {v:.3g}" for k, v in counts.items()))

    out = Path(r.output_dir) / "run" / f"{cell.cell_id}.json"
    write_json_atomic(out, {"format": 1, "cell_id": cell.cell_id, "pair_id": cell.pair_id,
                            "config": cell.describe(), "replicates": result.replicates,
                            "rounds": result.rounds, "elapsed_s": round(elapsed, 3), "summary": row})
    print(f"\nwrote {out}")
    return 0
