"""``python -m study calibrate [machine=NAME]``: fit the machine's event costs to the seed's table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from study.calibration.fit import fit
from study.calibration.priors import PRIORS, SCALE
from study.cli import command, config_error
from study.cli.common import Parser, parse
from study.config import compose, validate, config_dir
from study.errors import ConfigError
from study.runner.store import atomic_write_text
from study.seed import SEED_MACHINE, SEED_TABLE


@command()
def main(argv: list[str]) -> int:
    parser = Parser(prog="python -m study calibrate", description=__doc__)
    parser.add_argument("--replicates", type=int, default=400, help="replicates per seed cell during the fit")
    parser.add_argument("--rounds", type=int, default=40, help="loop iterations per replicate during the fit")
    parser.add_argument("--dry-run", action="store_true", help="print the fit, do not write the preset")
    try:
        args = parse(parser, argv)
        overrides = args.overrides or [f"machine={SEED_MACHINE}"]
        settings = validate(compose(overrides))
        machine, limits = settings.machine, settings.limits
        if args.replicates < 2 or args.rounds < 1:
            raise ConfigError("--replicates/--rounds", "need >= 2 replicates and >= 1 round")
        for option, value, most in (("--replicates", args.replicates, limits.replicates),
                                    ("--rounds", args.rounds, limits.rounds)):
            if value > most:
                key = option.strip("-")
                raise ConfigError(option, f"{value} is more than limits.{key}={most}; "
                                          f"raise it with limits.{key}=N to go further")
    except ConfigError as err:
        return config_error(err)

    print(f"fitting {len(PRIORS)} event costs of machine {machine.name!r} to the seed's {len(SEED_TABLE)} cells "
          f"({args.replicates} replicates x {args.rounds} rounds per cell per evaluation) ...", flush=True)
    result = fit(machine, replicates=args.replicates, rounds=args.rounds)
    print(f"\n{'parameter':24s} {'fitted':>8s}  {'prior range':>14s}  {'centre':>7s}")
    for p in PRIORS:
        value = result.values[p.name]
        inside = "" if p.low <= value <= p.high else "  OUTSIDE"
        print(f"{p.name:24s} {value:8.0f}  [{p.low:5.0f}, {p.high:5.0f}]  {p.centre:7.0f}{inside}")
    print(f"(smt and socket distance classes scale the core value by {SCALE})")
    print(f"\n{'cell':36s} {'seed':>6s} {'residual':>9s}")
    for cell, r in zip(SEED_TABLE, result.residuals):
        print(f"{cell.call + ' ' + str(cell.threads) + 'T ' + cell.policy:36s} {cell.cycles:6.0f} {r * 100:+8.2f}%")
    print(f"\n{result.evaluations} model evaluations; objective {result.cost:.3g}")
    if args.dry_run:
        return 0
    path = config_dir() / "machine" / f"{machine.name}.yaml"
    write_preset(path, result.machine, args)
    print(f"wrote {path}")
    return 0


def write_preset(path: Path, machine, args) -> None:
    """Rewrite the machine's preset with the fitted costs, atomically."""
    data = dataclasses.asdict(machine)
    data["calibrated"] = True
    data["source"] = (f"python -m study calibrate: least-squares fit to the seed's table "
                      f"({args.replicates} replicates x {args.rounds} rounds per cell)")
    for key, value in data["costs"].items():
        if isinstance(value, dict):
            data["costs"][key] = {k: int(round(v)) for k, v in value.items()}
        else:
            data["costs"][key] = int(round(value))
    header = (f"# {machine.name}: written by `python -m study calibrate`; edit the priors in\n"
              f"# study/calibration/priors.py and re-run rather than editing the costs by hand.\n")
    atomic_write_text(path, header + yaml.safe_dump(data, sort_keys=False))
