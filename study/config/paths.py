"""Where configs live, without importing Hydra (``--help`` lists groups from the files)."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from study.errors import ConfigError

CONFIG_NAME = "config"
CONFIG_DIR_ENV = "STUDY_CONFIG_DIR"
GROUP_DIRS = ("machine", "kernel", "workload", "policy", "sweep", "measure")


def config_dir() -> Path:
    """The study's config tree: the repository's ``conf/``, installed as the package ``study.conf``
    (setup.py maps it), found through importlib.resources whatever the working directory.

    A ``./conf/`` in the working directory is never read: every Hydra project has one, and it
    must not silently replace this study's configuration.  Without an install (the repository
    on ``sys.path`` only), the tree beside the package is the one: ``conf/`` next to ``study/``
    in the same checkout.
    """
    try:
        tree = importlib.resources.files("study.conf")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "conf"
    return Path(str(tree))


def user_config_dir() -> Path:
    """The user's presets and sweeps (``machine/``, ``sweep/``, ... subfolders), never in the package:
    ``--config-dir DIR`` (which sets ``$STUDY_CONFIG_DIR``), else ``$STUDY_CONFIG_DIR``, else
    ``$XDG_CONFIG_HOME/study``, else ``~/.config/study``.  A file there overrides the shipped
    file of the same group and name; ``python -m study calibrate`` writes its fits there."""
    if os.environ.get(CONFIG_DIR_ENV):
        return Path(os.environ[CONFIG_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "study"


def options() -> dict[str, list[str]]:
    """Every group's options: the shipped files, then the user's (``name (user)`` when new)."""
    found: dict[str, list[str]] = {}
    user = user_config_dir()
    for group in GROUP_DIRS:
        shipped = sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
        mine = sorted(p.stem for p in (user / group).glob("*.yaml")) if (user / group).is_dir() else []
        found[group] = shipped + [f"{m} (user)" for m in mine if m not in shipped]
    return found


def set_user_config_dir(path: str | Path) -> Path:
    """``--config-dir DIR``: the user config directory for this process (and its Ray workers'
    composition does not need it: cells are built on the driver)."""
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise ConfigError("--config-dir", f"{str(path)!r} is not a directory; give a directory holding "
                                          "machine/, workload/, policy/, kernel/ or sweep/ yaml files")
    os.environ[CONFIG_DIR_ENV] = str(directory.resolve())
    return directory
