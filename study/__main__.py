"""``python -m study <command> [args]``: dispatch to ``study.cli.<command>.main(argv)``."""

from __future__ import annotations

import importlib
import sys

from study.cli import EXIT_USAGE, commands


def usage() -> str:
    return "usage: python -m study <command> [args]\ncommands: " + ", ".join(commands())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = [a for a in argv if a == "--debug"]
    argv = [a for a in argv if a != "--debug"]  # a global option: handed to the command
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else EXIT_USAGE
    command, rest = argv[0], argv[1:]
    if command not in commands():
        print(f"error: {command}: unknown command; commands: {', '.join(commands())}", file=sys.stderr)
        return EXIT_USAGE
    module = importlib.import_module(f"study.cli.{command.replace('-', '_')}")
    return module.main(rest + debug)


if __name__ == "__main__":
    sys.exit(main())
