"""``python -m study seed-table [machine=NAME]``: the seed's benchmark, model beside the published numbers."""

from __future__ import annotations

import time
from pathlib import Path

from study.cli import command, config_error
from study.cli.common import Parser, check_replicates_rounds, parse, write_json_atomic
from study.errors import ConfigError
from study.results.files import check_output_dir
from study.seed import SEED_KERNEL, SEED_MACHINE

# numpy, scipy and Hydra load once the arguments are parsed: ``--help`` answers at once

EVENT_NAMES = {
    "ipis": "IPI (send + delivery + remote flush_tlb_func + ack, the initiator waits)",
    "remote_partial": "remote INVLPG flush",
    "remote_full": "remote full flush (lagged > 1 generation)",
    "local_partial": "local INVLPG",
    "local_full": "local full flush",
    "tlb_gen_xfers": "tlb_gen cache-line transfer",
}


@command(hydra=True)
def main(argv: list[str]) -> int:
    parser = Parser(prog="python -m study seed-table", description=__doc__)
    parser.add_argument("--replicates", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20220718, help="root seed of the simulation")
    parser.add_argument("--out", type=Path, default=Path("outputs") / "seed_table.json")
    try:
        args = parse(parser, argv)
        from study.config import compose, validate

        settings = validate(compose(args.overrides or [f"machine={SEED_MACHINE}"]))
        machine, kernel, limits = settings.machine, settings.kernel, settings.limits
        check_output_dir(args.out.parent, "--out")  # before the work
        check_replicates_rounds(args.replicates, args.rounds, limits)
    except ConfigError as err:
        return config_error(err)

    from study.calibration.seed_table import headline_changes, seed_table
    from study.engine.costs import CostTables

    start = time.perf_counter()
    rows = seed_table(machine, replicates=args.replicates, rounds=args.rounds, root_seed=args.seed, kernel=kernel)
    elapsed = time.perf_counter() - start
    note = "" if machine.calibrated else "  (UNCALIBRATED machine preset)"
    if kernel.name != SEED_KERNEL:
        note += f"  (kernel {kernel.name}: the seed was measured on {SEED_KERNEL})"
    print(f"seed table on {machine.name}{note}, kernel {kernel.name}: {args.replicates} replicates x "
          f"{args.rounds} rounds per cell, "
          f"mean cycles per call with 95% CI\n")
    print(f"{'call':22s} {'thr':>3s} {'policy':8s} {'seed':>6s} {'model':>8s} {'95% CI':>19s} {'error':>7s}")
    for r in rows:
        print(f"{r.call:22s} {r.threads:3d} {r.policy:8s} {r.seed_cycles:6.0f} {r.model_cycles:8.1f} "
              f"[{r.ci_low:7.1f}, {r.ci_high:7.1f}] {r.rel_error * 100:+6.2f}%")
    print("\nrelaxed vs strict at 2 threads:")
    for call, (model, seed) in headline_changes(rows).items():
        print(f"  {call:22s} model {model * 100:+6.1f}%   seed {seed * 100:+6.1f}%   "
              f"difference {(model - seed) * 100:+5.1f} points")
    print("\nevents per call (what makes each difference):")
    for r in rows:
        events = ", ".join(f"{v:.2f} {EVENT_NAMES[k]}" for k, v in r.events_per_call.items()
                           if k in EVENT_NAMES and v > 0.005)
        print(f"  {r.call:22s} {r.threads}T {r.policy:8s} {events}")
    c = CostTables(machine).c      # with PTI's CR3 switches and INVPCID folded in where paid
    print(f"\n  costs: IPI wait = is_lazy read + csd lock + llist_add 3 x {machine.costs.remote_line.core:.0f} + "
          f"send {c.ipi_send:.0f} + delivery {c.ipi_deliver.core:.0f} + handler "
          f"(irq {c.irq_entry_exit:.0f} + tlb_gen {c.tlb_gen_xfer.core:.0f} + INVLPG {c.invlpg:.0f} or full "
          f"{c.flush_full:.0f}) + ack {c.ipi_ack.core:.0f}; cpumask scan {c.cpumask_scan:.0f} (strict only)"
          + ("; PTI on: CR3 switches, INVPCID and the user-ASID flush included" if machine.pti else ""))

    write_json_atomic(args.out, [
        {**r.as_dict(), "machine": machine.name, "machine_calibrated": machine.calibrated,
         "replicates": args.replicates, "rounds": args.rounds, "seed": args.seed}
        for r in rows])
    print(f"\nwrote {args.out}  ({elapsed:.1f} s)")
    return 0
