"""What every command shares: ``--options`` beside Hydra ``key=value`` overrides, and errors."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from study.errors import ConfigError


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
