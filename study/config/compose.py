"""Hydra's compose API behind one call, with Hydra's errors turned into ConfigError.

The compose API (not ``@hydra.main``) is used on purpose: it neither changes directory nor
creates a run directory or ``.hydra/`` folder, so a command writes only what it means to.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from study.errors import ConfigError

CONFIG_NAME = "config"


def config_dir() -> Path:
    """``./conf`` when the working directory has one, else the ``conf/`` beside the package."""
    local = Path.cwd() / "conf"
    if (local / f"{CONFIG_NAME}.yaml").is_file():
        return local.resolve()
    return Path(__file__).resolve().parents[2] / "conf"


def user_config_dir() -> Path:
    """Where machines fitted to a measurement live (never in the repository):
    ``$STUDY_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/study``, else ``~/.config/study``."""
    if os.environ.get("STUDY_CONFIG_DIR"):
        return Path(os.environ["STUDY_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "study"


def _search_path() -> list[str]:
    """``machine=<host>`` finds <user_config_dir>/machine/<host>.yaml (python -m study calibrate --from)."""
    user = user_config_dir()
    return [f"hydra.searchpath=[file://{user.resolve()}]"] if (user / "machine").is_dir() else []


def compose(overrides: list[str] | tuple[str, ...] = (), conf_dir: Path | str | None = None) -> DictConfig:
    """Compose ``config.yaml`` with Hydra ``overrides``; bad overrides raise ConfigError."""
    directory = Path(conf_dir) if conf_dir is not None else config_dir()
    overrides = list(overrides)
    try:
        return _compose(directory, overrides)
    except MissingConfigException as err:
        raise _missing_option(err) from None
    except OverrideParseException as err:
        key = err.override.split("=", 1)[0] if err.override else "override"
        reason = err.message.splitlines()[0] if err.message else "unparsable"
        raise ConfigError(key, f"cannot parse override {err.override!r} ({reason})") from None
    except ConfigCompositionException as err:
        raise _composition_error(err, directory, overrides) from None


def _compose(directory: Path, overrides: list[str]) -> DictConfig:
    # Someone else's initialize() would make ours fail; the config layer owns Hydra here.
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(directory), version_base="1.3", job_name="study"):
        return hydra_compose(config_name=CONFIG_NAME, overrides=_search_path() + overrides)


def _missing_option(err: MissingConfigException) -> ConfigError:
    """``workload=nope`` (or a nested group in a defaults list) -> the group's options."""
    missing = err.missing_cfg_file or ""
    group, _, option = missing.rpartition("/")
    if not group:
        return ConfigError(missing or "config", f"no such config file; {err}")
    allowed = ", ".join(err.options) if err.options else "none"
    return ConfigError(group.replace("/", "."), f"unknown option {option!r}; allowed: {allowed}")


def _composition_error(err: ConfigCompositionException, directory: Path, overrides: list[str]) -> ConfigError:
    """Name the overridden key and, when it is unknown, the keys its parent has."""
    cause = err.__cause__
    key = getattr(cause, "full_key", None)
    if not key:
        match = re.search(r"override '([^']+)'", str(err))
        key = match.group(1) if match else "override"
    text = str(cause) if cause is not None else str(err)
    if "not in struct" in text or isinstance(cause, AttributeError):
        return ConfigError(key, f"unknown key; allowed: {_siblings(key, directory, overrides)}")
    if isinstance(cause, OmegaConfBaseException):
        return ConfigError(key, text.splitlines()[0])
    return ConfigError(key, str(err).splitlines()[0])


def _siblings(key: str, directory: Path, overrides: list[str]) -> str:
    """The keys beside ``key``, read from a composition without the overrides naming it."""
    parent, _, _ = key.rpartition(".")
    # Keep group selections: ``workload=uffd_wp workload.write_rate=1`` must list uffd_wp's keys.
    kept = [o for o in overrides if _override_key(o) != key and "=" in o and not _override_key(o).startswith(key + ".")]
    try:
        cfg = _compose(directory, kept)
    except Exception:  # the other overrides are broken too; the first error is enough
        return "a key of the composed config"
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if isinstance(node, DictConfig):
        return ", ".join(str(k) for k in node.keys()) or "none (empty node)"
    return f"none ({parent} is a {type(node).__name__}, not a mapping)"


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")
