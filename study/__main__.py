"""``python -m study <command> [args]``: dispatch to ``study.cli.<command>.main(argv)``."""

from __future__ import annotations

import importlib
import sys

from study.cli import EXIT_USAGE, commands


def usage() -> str:
    """Commands, config groups with their options, and the keys of config.yaml, read from the
    files (nothing heavy is imported: this answers in well under a second)."""
    import ast
    from pathlib import Path

    import yaml

    from study.config.paths import config_dir, options, user_config_dir

    here = Path(__file__).parent / "cli"
    lines = ["usage: python -m study <command> [--options] [key=value ...]   (python -m study <command> --help)",
             "", "commands:"]
    for name in commands():
        doc = ast.get_docstring(ast.parse((here / f"{name.replace('-', '_')}.py").read_text())) or ""
        first = doc.strip().splitlines()[0] if doc.strip() else ""
        first = first.split(":", 1)[1].strip() if first.startswith("``") and ":" in first else first
        lines.append(f"  {name:12s} {first}")
    lines += ["", f"config groups (key=option; shipped in {config_dir()}, yours in {user_config_dir()}):"]
    for group, names in options().items():
        lines.append(f"  {group:10s} {', '.join(names)}")
    data = yaml.safe_load((config_dir() / "config.yaml").read_text()) or {}
    lines += ["", "keys (key=value; group keys too, e.g. workload.threads=4, machine.costs.invlpg=250):"]
    for node in ("run", "ray", "limits"):
        if isinstance(data.get(node), dict):
            lines.append(f"  {node}.{{{','.join(data[node])}}}")
    lines += ["", "options of every command: --debug (tracebacks), --config-dir DIR (your presets and sweeps)",
              "run/sweep/seed-table/calibrate: --cfg job|all [--resolve] (print the composed config), --info",
              "sweep: -m key=a,b key=range(1,5) group=glob(*)  (an ad-hoc sub-grid, Hydra's sweep syntax)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = [a for a in argv if a == "--debug"]
    argv = [a for a in argv if a != "--debug"]  # a global option: handed to the command
    leading = []  # --config-dir DIR / --no-user-config before the command: handed to it too
    while argv and (argv[0] in ("--config-dir", "--no-user-config") or argv[0].startswith("--config-dir=")):
        take = 2 if argv[0] == "--config-dir" else 1
        leading, argv = leading + argv[:take], argv[take:]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else EXIT_USAGE
    command, rest = argv[0], argv[1:]
    if command not in commands():
        print(f"error: {command}: unknown command; commands: {', '.join(commands())}", file=sys.stderr)
        return EXIT_USAGE
    module = importlib.import_module(f"study.cli.{command.replace('-', '_')}")
    return module.main(leading + rest + debug)


if __name__ == "__main__":
    sys.exit(main())
