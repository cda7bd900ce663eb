"""Commands of ``python -m study <command>``: one module each, ``main(argv) -> int``.

A module ``study/cli/<name>.py`` is the command ``<name>`` (``-`` on the command line
stands for ``_``).  Exit codes: 0 done, 1 failed while running, 2 bad usage, config or
input, 130 interrupted by Ctrl-C (SIGINT), 143 stopped by SIGTERM.  Every failure is one
line on stderr; ``--debug`` (any command) adds the traceback.
"""

from __future__ import annotations

import functools
import os
import pkgutil
import re
import signal
import sys
import traceback
from pathlib import Path

from study import interrupt
from study.errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEBUG_FLAG = "--debug"


def command(interrupted: str = "nothing was half-written", hydra: bool = False):
    """Decorate a command's ``main(argv)``: ``--debug``, SIGTERM, and one line per failure.

    Bad input (ConfigError, argparse errors) exits 2; Ctrl-C or SIGTERM prints one
    "interrupted" line (``interrupted`` says what is kept) and exits 128 + the signal;
    any other exception is a failure while running: one line, exit 1.  With ``--debug``
    (or STUDY_DEBUG=1) the traceback is printed too.
    """

    def wrap(fn):
        @functools.wraps(fn)
        def main(argv: list[str] | None = None) -> int:
            argv = list(sys.argv[1:] if argv is None else argv)
            debug = DEBUG_FLAG in argv or os.environ.get("STUDY_DEBUG", "") not in ("", "0")
            argv = [a for a in argv if a != DEBUG_FLAG]
            interrupt.handle_sigterm()
            try:
                argv = take_config_dir(argv)
                if hydra and any(a in ("--cfg", "--info") or a.startswith("--cfg=") for a in argv):
                    return hydra_flags(argv)
                return fn(argv)
            except ConfigError as err:
                if debug:
                    traceback.print_exc()
                return config_error(err)
            except KeyboardInterrupt as err:
                if debug:
                    traceback.print_exc()
                signum = getattr(err, "signum", None) or (interrupt.received[-1] if interrupt.received else signal.SIGINT)
                name = signal.Signals(signum).name
                print(f"interrupted ({name}): {interrupted}", file=sys.stderr)
                return 128 + int(signum)
            except SystemExit:
                raise
            except Exception as err:
                if debug:
                    traceback.print_exc()
                print(f"error: {one_line(err)}", file=sys.stderr)
                return EXIT_FAILED

        return main

    return wrap


CONFIG_DIR_FLAG = "--config-dir"
NO_USER_CONFIG_FLAG = "--no-user-config"


def take_config_dir(argv: list[str]) -> list[str]:
    """``--config-dir DIR`` / ``--config-dir=DIR`` (any command): the user's presets and sweeps.

    It sets ``$STUDY_CONFIG_DIR`` for this process, so the flag and the variable are one thing.
    ``--no-user-config`` reads the shipped configs only (dvc.yaml's stages use it).
    """
    rest, i = [], 0
    while i < len(argv):
        word = argv[i]
        if word == NO_USER_CONFIG_FLAG:
            # the pipeline's stages: only the shipped configs, whatever this user keeps
            os.environ["STUDY_CONFIG_DIR"] = os.devnull
        elif word == CONFIG_DIR_FLAG or word.startswith(CONFIG_DIR_FLAG + "="):
            if "=" in word:
                value = word.split("=", 1)[1]
            elif i + 1 < len(argv):
                value, i = argv[i + 1], i + 1
            else:
                raise ConfigError(CONFIG_DIR_FLAG, "expected a directory after it")
            from study.config.paths import set_user_config_dir

            set_user_config_dir(value)
        else:
            rest.append(word)
        i += 1
    return rest


def hydra_flags(argv: list[str]) -> int:
    """Hydra's ``--cfg job|all [--resolve]`` (print the composed config) and ``--info`` (where
    configs come from, the groups and their options), answering before any work."""
    from study.config.paths import config_dir, options, user_config_dir

    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    words = [a for a in argv if a.startswith("-")]
    if "--info" in words:
        user = user_config_dir()
        print(f"config search path (first wins):\n  user:    {user} ({'present' if user.is_dir() else 'absent'}; "
              f"--config-dir DIR or $STUDY_CONFIG_DIR)\n  package: {config_dir()}")
        print("groups and options:")
        for group, names in options().items():
            print(f"  {group}: {', '.join(names) or '-'}")
        print("overrides: " + (" ".join(overrides) or "(none)"))
        return EXIT_OK
    mode = next((a.split("=", 1)[1] for a in words if a.startswith("--cfg=")), None)
    if mode is None:
        i = argv.index("--cfg")
        mode = argv[i + 1] if i + 1 < len(argv) else ""
        overrides = [a for a in overrides if a != mode]
    if mode not in ("job", "all"):
        raise ConfigError("--cfg", f"expected job or all, got {mode!r}")
    from omegaconf import OmegaConf

    from study.config import compose, validate

    cfg = compose([a for a in overrides if a != mode])
    validate(cfg)  # the same checks as a run: a bad key is one line here too
    print(OmegaConf.to_yaml(cfg, resolve="--resolve" in words), end="")
    return EXIT_OK


def one_line(err: BaseException) -> str:
    """An exception as one line: its message's first line, or its type when it has none."""
    if isinstance(err, OSError) and err.strerror:
        where = f"{err.filename}: " if err.filename else ""
        return f"{where}{err.strerror}"
    text = str(err).strip().splitlines()
    return text[0] if text and type(err).__module__.startswith("study") else (
        f"{type(err).__name__}: {text[0]}" if text else type(err).__name__)


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
