"""``python -m study sweep [overrides]``: run a named grid of conf/sweep/ on Ray."""

from __future__ import annotations

import sys

from study.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, command
from study.config.paths import config_dir
from study.errors import ConfigError

MULTIRUN = ("-m", "--multirun")
GROUPS = ("machine", "kernel", "workload", "policy")


def usage() -> str:
    sweeps = sorted(p.stem for p in (config_dir() / "sweep").glob("*.yaml"))
    return ("usage: python -m study sweep [sweep=<name>] [key=value ...]\n"
            f"  sweeps: {', '.join(sweeps)} (conf/sweep/; default: default)\n"
            "  e.g.   python -m study sweep sweep=quick ray.num_cpus=2 run.output_dir=/tmp/out\n"
            "  -m / --multirun: an ad-hoc sub-grid in Hydra's sweep syntax instead of the file's grids,\n"
            "         with the selected sweep's run settings; written to <run.output_dir>/sweep/adhoc/\n"
            "         (or sweep.name=NAME):\n"
            "         python -m study sweep -m workload.threads=1,2,4 policy=strict,relaxed\n"
            "         python -m study sweep sweep=quick -m 'workload.pages=range(1,5)' 'kernel=glob(*)'\n"
            "  writes <run.output_dir>/sweep/<name>/{cells.parquet,cells.csv,replicates.parquet,"
            "calls.parquet,manifest.json}")


@command(interrupted="finished cells are kept and reused by the next run; the previous tables are unchanged", hydra=True)
def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(usage())
        return EXIT_OK
    multirun = any(a in MULTIRUN for a in argv)
    argv = [a for a in argv if a not in MULTIRUN]
    flags = [a for a in argv if a.startswith("-") and not a.startswith("~")]
    if flags:
        print(f"error: {flags[0]}: not an option; give Hydra overrides key=value (see --help)", file=sys.stderr)
        return EXIT_USAGE
    # Imported here so that `--help` and bad usage answer without loading the engine.
    from study.runner import plan, run
    from study.runner.sweep import SweepFailed

    grid = None
    if multirun:
        argv, grid = split_sweep_overrides(argv)
    sweep_plan = plan(argv, grid=grid)  # bad input: ConfigError -> one line, exit 2, nothing written
    for warning in sweep_plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    try:
        run(sweep_plan)
    except SweepFailed as err:
        print(f"error: sweep {sweep_plan.name}: {err}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def split_sweep_overrides(argv: list[str]) -> tuple[list[str], dict[str, list]]:
    """Hydra's own parser: ``a=1,2``, ``a=range(1,5)``, ``group=glob(*)`` become the axes of one
    sub-grid; plain ``key=value`` words stay overrides of the base config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob, Transformer
    from hydra.errors import OverrideParseException

    from study.config.paths import options
    from study.config.settings import WITHOUT

    try:
        parsed = OverridesParser.create().parse_overrides(argv)
    except OverrideParseException as err:
        key = err.override.split("=", 1)[0] if err.override else "override"
        raise ConfigError(key, f"cannot parse override {err.override!r} ({err.message.splitlines()[0]})") from None
    plain, grid = [], {}
    for word, override in zip(argv, parsed):
        key = override.get_key_element()
        if key == WITHOUT and not override.is_sweep_override():
            # the attribution variants are an axis even when one value names them (each)
            grid[key] = [override.value()]
            continue
        if not override.is_sweep_override():
            plain.append(word)
            continue
        if key.startswith("sweep"):
            raise ConfigError(key, "a sweep's own keys cannot be swept; -m sweeps config keys and groups")
        value = override.value()
        if isinstance(value, Glob):
            if key not in GROUPS:
                raise ConfigError(key, f"glob() selects options of a group ({', '.join(GROUPS)})")
            values = value.filter([o.removesuffix(" (user)") for o in options()[key]])
            if not values:
                raise ConfigError(key, f"glob() matches no option; options: {', '.join(options()[key])}")
        else:
            values = list(override.sweep_iterator(transformer=Transformer.identity))
        if key in grid:
            raise ConfigError(key, "swept twice; give its values once (a=1,2)")
        grid[key] = values
    return plain, grid
