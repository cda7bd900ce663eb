"""What every command shares: ``--options`` beside Hydra ``key=value`` overrides, and errors."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from study.errors import ConfigError


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: a bad option is a ConfigError naming the option."""

    def error(self, message: str):
        match = re.match(r"argument ([^:]+): (.*)", message)
        if match:
            key = match.group(1).split("/")[-1]
            raise ConfigError(key, match.group(2))
        raise ConfigError("arguments", message)


def check_replicates_rounds(replicates: int, rounds: int, limits) -> None:
    """``--replicates``/``--rounds`` of a command that simulates the seed's cells: at least 2
    replicates and 1 round, at most the config's ``limits`` (raised with ``limits.KEY=N``)."""
    if replicates < 2 or rounds < 1:
        raise ConfigError("--replicates/--rounds", "need >= 2 replicates and >= 1 round")
    for option, value, most in (("--replicates", replicates, limits.replicates), ("--rounds", rounds, limits.rounds)):
        if value > most:
            key = option.strip("-")
            raise ConfigError(option, f"{value} is more than limits.{key}={most}; "
                                      f"raise it with limits.{key}=N to go further")


# the run size of the commands that simulate outside a sweep's config (ensemble, conditions):
# bounds a command checks before any work, so a typo cannot ask for terabytes or years
MAX_REPLICATES = 4096
MAX_ROUNDS = 1000


def check_size(replicates: int, rounds: int) -> None:
    """``--replicates`` in [2, MAX_REPLICATES] and ``--rounds`` in [1, MAX_ROUNDS]."""
    if not 2 <= replicates <= MAX_REPLICATES:
        raise ConfigError("--replicates", f"an integer in [2, {MAX_REPLICATES}], got {replicates}")
    if not 1 <= rounds <= MAX_ROUNDS:
        raise ConfigError("--rounds", f"an integer in [1, {MAX_ROUNDS}], got {rounds}")


def add_sweep_options(parser: argparse.ArgumentParser, purpose: str) -> None:
    """``--sweep NAME`` (``purpose``: what the command does with it) and ``--out DIR``, the
    outputs directory holding ``sweep/<NAME>/``, of a command that reads a sweep."""
    parser.add_argument("--sweep", default="default", metavar="NAME", help=f"{purpose} (default: %(default)s)")
    parser.add_argument("--out", default=Path("outputs"), type=Path, metavar="DIR",
                        help="outputs directory holding sweep/<NAME>/ (default: %(default)s)")


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    """``--num-cpus`` and ``--serial`` of a command that runs its tasks on a local Ray instance."""
    parser.add_argument("--num-cpus", type=int, default=None,
                        help="CPUs of the local Ray instance, at most this machine's (default: all)")
    parser.add_argument("--serial", action="store_true", help="run in this process, without Ray")


def check_ray_options(args) -> None:
    """``--num-cpus`` between 1 and this machine's CPUs: Ray never schedules on 0, and more
    workers than CPUs only adds contention."""
    import os

    most = os.cpu_count() or 1
    if args.num_cpus is not None and not 1 <= args.num_cpus <= most:
        raise ConfigError("--num-cpus", f"an integer in [1, {most}] (this machine's CPUs), got {args.num_cpus}")


def require_sweep(out: Path, sweep: str) -> Path:
    """``out/sweep/<sweep>/``, which a command reading a sweep's cells needs to exist."""
    sweep_dir = out / "sweep" / sweep
    if not (sweep_dir / "cells.parquet").exists():
        raise ConfigError("--sweep", f"no sweep {sweep!r} under {out}/sweep/: run "
                                     f"`python -m study sweep sweep={sweep}` first")
    return sweep_dir


def parse(parser: argparse.ArgumentParser, argv: list[str]):
    """Options for ``parser``; every ``key=value`` word is a Hydra override."""
    parser.add_argument("overrides", nargs="*", help="Hydra-style key=value overrides, e.g. workload.threads=4")
    args = parser.parse_args(argv)
    for word in args.overrides:
        if "=" not in word:
            raise ConfigError(word, "expected a key=value override (e.g. workload.threads=4)")
    return args


def write_json_atomic(path: Path, data) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and rename (never half-written)."""
    from study.results.files import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def merge_run_info(path: Path, **fields) -> None:
    """Merge ``fields`` (timings, reuse counts) into the JSON file ``path``: a command's run
    information, kept outside its DVC outputs so that the same inputs give the same bytes."""
    from study.results.files import atomic_write_text

    try:
        info = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        info = {}
    info.update(fields)
    atomic_write_text(path, json.dumps(info, indent=1, sort_keys=True) + "\n")
