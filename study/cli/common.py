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
