"""Commands of ``python -m study <command>``: one module each, ``main(argv) -> int``.

A module ``study/cli/<name>.py`` is the command ``<name>`` (``-`` on the command line
stands for ``_``).  Exit codes: 0 done, 1 failed while running, 2 bad usage or config.
"""

from __future__ import annotations

import pkgutil
import re
import sys
from pathlib import Path

from study.errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def commands() -> list[str]:
    """Command names: the modules of this package that define ``main`` (helpers do not).

    The source is read, not imported, so that a usage line does not load every command.
    """
    here = Path(__file__).parent
    names = [m.name for m in pkgutil.iter_modules([str(here)]) if not m.ispkg and not m.name.startswith("_")]
    return sorted(n.replace("_", "-") for n in names if _MAIN.search((here / f"{n}.py").read_text()))


_MAIN = re.compile(r"^def main\(", re.MULTILINE)


def config_error(err: ConfigError) -> int:
    """Print a bad key as the one line every command uses, and give the usage exit code."""
    print(f"error: {err.key}: {err.allowed}", file=sys.stderr)
    return EXIT_USAGE
