"""``python -m study calibrate [machine=NAME]``: fit the machine's event costs to the seed's table,
and say which parameter combinations the seed's 8 cells pin and which only their priors set.

The fit is written to ``<user config dir>/machine/<machine>.yaml`` (``--config-dir DIR`` or
``$STUDY_CONFIG_DIR``, else ``~/.config/study``), where it overrides the shipped preset of that
name; ``--write-preset`` (developers) rewrites ``conf/machine/<machine>.yaml`` instead.

``python -m study calibrate --from outputs/measure/<host>``: fit a machine to this host's
measurement instead (study/cli/_calibrate_host.py).
"""

from __future__ import annotations

import json
from pathlib import Path


from study.cli import command, config_error
from study.cli.common import Parser, check_replicates_rounds, parse
from study.config.paths import config_dir, user_config_dir
from study.errors import ConfigError
from study.seed import SEED_KERNEL, SEED_MACHINE, SEED_TABLE

# numpy, scipy and Hydra load once the arguments are parsed: ``--help`` answers at once


@command(hydra=True)
def main(argv: list[str]) -> int:
    parser = Parser(prog="python -m study calibrate", description=__doc__)
    parser.add_argument("--replicates", type=int, default=400, help="replicates per seed cell during the fit")
    parser.add_argument("--rounds", type=int, default=40, help="loop iterations per replicate during the fit")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the fit and the identifiability table, write nothing")
    parser.add_argument("--out", type=Path, default=Path("outputs") / "calibration",
                        help="directory for <machine>_identifiability.json (default: %(default)s)")
    parser.add_argument("--write-preset", action="store_true",
                        help="developers: rewrite the preset shipped in the package (conf/machine/) "
                             "instead of writing the fit into the user config directory")
    parser.add_argument("--from", dest="source", type=Path, default=None, metavar="DIR",
                        help="fit a machine to this host's measurement (outputs/measure/<host>) instead")
    try:
        args = parse(parser, argv)
        if args.source is not None:
            from study.cli import _calibrate_host

            if args.overrides:
                raise ConfigError(args.overrides[0], "--from takes no overrides; the measurement's config "
                                                     "(calibrate.train) names the training cells")
            return _calibrate_host.run(args.source, dry_run=args.dry_run)
        from study.config import compose, validate

        overrides = args.overrides or [f"machine={SEED_MACHINE}"]
        settings = validate(compose(overrides))
        machine, limits = settings.machine, settings.limits
        if settings.kernel.name != SEED_KERNEL:
            raise ConfigError("kernel", f"the seed's table was measured on {SEED_KERNEL}; calibrate fits against "
                                        f"it, so kernel must be {SEED_KERNEL}, got {settings.kernel.name!r}")
        check_replicates_rounds(args.replicates, args.rounds, limits)
    except ConfigError as err:
        return config_error(err)

    from study.calibration.fit import fit, identifiability
    from study.calibration.priors import PRIORS, SCALE
    from study.results.files import atomic_write_text

    print(f"fitting {len(PRIORS)} event costs of machine {machine.name!r} (kernel {SEED_KERNEL}) to the seed's "
          f"{len(SEED_TABLE)} cells "
          f"({args.replicates} replicates x {args.rounds} rounds per cell per evaluation) ...", flush=True)
    result = fit(machine, replicates=args.replicates, rounds=args.rounds)
    print(f"\n{'parameter':24s} {'fitted':>8s}  {'prior range':>14s}  {'centre':>7s}")
    for p in PRIORS:
        value = result.values[p.name]
        inside = "" if p.low <= value <= p.high else "  OUTSIDE"
        print(f"{p.name:24s} {value:8.0f}  [{p.low:5.0f}, {p.high:5.0f}]  {p.centre:7.0f}{inside}")
    print(f"(smt and socket distance classes are not fitted: fixed ratios {SCALE} to the core value)")
    print(f"\n{'cell':36s} {'seed':>6s} {'residual':>9s}")
    for cell, r in zip(SEED_TABLE, result.residuals):
        print(f"{cell.call + ' ' + str(cell.threads) + 'T ' + cell.policy:36s} {cell.cycles:6.0f} {r * 100:+8.2f}%")
    print(f"\n{result.evaluations} model evaluations; objective {result.cost:.3g}")
    ident = identifiability(result.machine, replicates=args.replicates, rounds=args.rounds)
    print_identifiability(ident)
    if args.dry_run:
        return 0
    # A fit goes to the user's config directory (where it overrides the shipped preset of that
    # name for every command); only --write-preset touches the package's own file.
    path = (config_dir() if args.write_preset else user_config_dir()) / "machine" / f"{machine.name}.yaml"
    write_preset(path, result.machine, args, template=config_dir() / "machine" / f"{machine.name}.yaml")
    print(f"wrote {path}")
    table = args.out / f"{machine.name}_identifiability.json"
    atomic_write_text(table, json.dumps(dict(machine=machine.name, **ident.as_dict()), indent=1) + "\n")
    print(f"wrote {table}")
    return 0


def print_identifiability(ident) -> None:
    """Singular values, the pinned combinations, and which parameters only their priors set."""
    print(f"\nWhat the seed's {len(SEED_TABLE)} cells pin (J = d log cell / d log cost at the fit):")
    print("singular values: " + ", ".join(f"{s:.3g}" for s in ident.singular_values))
    print(f"pinned directions (singular value >= {ident.threshold}: doubling one moves the cells' logs by "
          f">= {ident.threshold * 0.693 * 100:.1f}%): {ident.n_pinned} combinations of {len(ident.parameters)} costs")
    for i, (s, combo) in enumerate(zip(ident.singular_values, ident.combinations(k=len(ident.singular_values)))):
        print(f"  {s:9.3g}  {'pinned  ' if i < ident.n_pinned else 'unpinned'}  {combo}")
    share, status = ident.pinned_share(), ident.status()
    print(f"\n{'parameter':20s} {'pinned share':>12s}  status")
    for p in ident.parameters:
        print(f"{p:20s} {share[p]:12.2f}  {status[p]}")
    only = [p for p in ident.parameters if status[p] == "prior only"]
    print("\nset by their priors alone: " + (", ".join(only) if only else "none"))


def write_preset(path: Path, machine, args, template: Path | None = None) -> None:
    """Rewrite the machine's preset with the fitted costs, atomically."""
    from study.config.presets import machine_yaml
    from study.results.files import atomic_write_text

    source = (f"python -m study calibrate: least-squares fit to the seed's table on kernel {SEED_KERNEL} "
              f"({args.replicates} replicates x {args.rounds} rounds per cell)")
    header = (f"# {machine.name}: written by `python -m study calibrate`; edit the priors in\n"
              f"# study/calibration/priors.py and re-run rather than editing the costs by hand.\n")
    # keep the preset's own comment block (its hardware facts and their sources)
    kept = []
    previous = path if path.exists() else template
    if previous is not None and previous.exists():
        for line in previous.read_text().splitlines()[2:]:
            if not line.startswith("#"):
                break
            kept.append(line + "\n")
    atomic_write_text(path, machine_yaml(machine, source, header + "".join(kept)))
