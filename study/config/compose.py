"""Hydra's compose API behind one call, with Hydra's errors turned into ConfigError.

The compose API (not ``@hydra.main``) is used on purpose: it neither changes directory nor
creates a run directory or ``.hydra/`` folder, so a command writes only what it means to.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:  # Hydra loads when a config is composed, not when the CLI starts
    from hydra.errors import ConfigCompositionException, MissingConfigException
    from omegaconf import DictConfig

from study.config.paths import CONFIG_NAME, config_dir, set_user_config_dir, user_config_dir  # noqa: F401
from study.errors import ConfigError


def _user_dir_for_search() -> Path | None:
    """The user directory when it exists; its own ``config.yaml`` is refused (it would replace
    the study's defaults list silently)."""
    user = user_config_dir()
    if not user.is_dir():
        return None
    if (user / f"{CONFIG_NAME}.yaml").exists():
        raise ConfigError(str(user / f"{CONFIG_NAME}.yaml"),
                          "a user config directory holds presets in group folders (machine/, sweep/, ...), "
                          "not a config.yaml; override defaults with key=value instead")
    return user.resolve()


def compose(overrides: list[str] | tuple[str, ...] = (), conf_dir: Path | str | None = None) -> DictConfig:
    """Compose ``config.yaml`` with Hydra ``overrides``; bad overrides raise ConfigError."""
    directory = Path(conf_dir) if conf_dir is not None else config_dir()
    overrides = list(overrides)
    for override in overrides:
        _check_override_duplicates(override)
    check_yaml_tree(directory)
    user = _user_dir_for_search()
    if user is not None:
        check_yaml_tree(user)
    choices: dict = {}
    try:
        cfg = _compose_or_explain(directory, overrides, choices=choices)
    except ConfigError as err:
        cfg = _untyped(directory, overrides, err, choices)
    except (AttributeError, AssertionError) as err:  # OmegaConf 2.3 on a null typed node, see _untyped
        cfg = _untyped(directory, overrides, err, choices)
    _check_switch_overrides(cfg, overrides)
    _check_switch_files(choices, directory)
    return cfg


def _compose_or_explain(directory: Path, overrides: list[str], typed: bool = True,
                        choices: dict | None = None) -> DictConfig:
    """Hydra's composition; its errors as one ConfigError naming the key."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    try:
        return _compose(directory, overrides, typed=typed, choices=choices)
    except yaml.YAMLError as err:
        raise yaml_error(err) from None
    except MissingConfigException as err:
        raise _missing_option(err) from None
    except OverrideParseException as err:
        key = err.override.split("=", 1)[0] if err.override else "override"
        reason = err.message.splitlines()[0] if err.message else "unparsable"
        raise ConfigError(key, f"cannot parse override {err.override!r} ({reason})") from None
    except ConfigCompositionException as err:
        raise _composition_error(err, directory, overrides) from None


def _untyped(directory: Path, overrides: list[str], first: Exception, choices: dict) -> DictConfig:
    """The composition against the root schema failed: compose again without it
    (``study_schema`` stored empty) and let study.config.validate name the key.

    Hydra reports a value refused by the root schema in a yaml file as "In 'sweep/x':
    ValidationError raised while composing config" and the grid's shape as OmegaConf's type
    hint; validating the untyped composition says ``sweep.grids[0].policy: must be a list of
    values``, as for any other source of the value.  OmegaConf 2.3 also fails on overrides that
    go through a null typed node (``ray.runtime_env={pip: [numpy]}`` merges into a null
    ``Dict`` node: AttributeError, omegaconf#1360; ``~sweep sweep.name=x``: AssertionError,
    omegaconf#1035): the untyped composition, once validated, is the config.
    """
    from study.config.validate import structured

    cfg = _compose_or_explain(directory, overrides, typed=False, choices=choices)
    structured(cfg)  # types and unknown keys of every node, as the root schema would
    if isinstance(first, ConfigError):
        raise first  # the schema refused what the validation accepts: keep the schema's word
    return cfg


def _check_switch_files(choices: dict, directory: Path) -> None:
    """A switch (``run.adaptive``, ``ray.include_dashboard``) set in a chosen ``@package _global_``
    file (a sweep preset) is true or false: the root schema would read ``1`` or ``yes`` as true."""
    from study.config.schema import SCHEMA_SUFFIX, LimitsConfig, RayConfig, RunConfig
    from study.config.validate import strict_bools

    user = _user_dir_for_search()
    for group, option in choices.items():
        if not isinstance(option, str) or group.startswith("hydra") or option.endswith(SCHEMA_SUFFIX):
            continue
        paths = ([user / group / f"{option}.yaml"] if user is not None else []) + [directory / group / f"{option}.yaml"]
        path = next((p for p in paths if p.is_file()), None)
        if path is None:
            continue
        data = _global_file(path)
        if data is None:
            continue
        for node, schema in (("run", RunConfig), ("ray", RayConfig), ("limits", LimitsConfig)):
            if isinstance(data, dict) and isinstance(data.get(node), dict):
                try:
                    strict_bools(schema, data[node], node)
                except ConfigError as err:
                    raise ConfigError(err.key, f"{err.allowed} (in {path})") from None


# path -> ((mtime_ns, size), its data if the file is ``@package _global_``, else None): a sweep
# plans a composition per grid selection, each choosing the same sweep file.
_GLOBAL_FILES: dict[Path, tuple[tuple[int, int], object]] = {}


def _global_file(path: Path):
    """The data of a chosen ``@package _global_`` yaml file, or None for any other file."""
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _GLOBAL_FILES.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text) if "@package _global_" in "".join(text.splitlines(True)[:3]) else None
    _GLOBAL_FILES[path] = (stamp, data)
    return data


def _check_switch_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """``policy.relaxed_flush_on_upgrade=3``: a schema's bool node reads 3 as true at composition;
    a switch set on the command line must say true or false (as study.config.validate requires)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for override in overrides:
        key, eq, value = override.partition("=")
        key = key.lstrip("+~")
        if not eq or "." not in key or "${" in value:
            continue
        try:
            node = OmegaConf.select(cfg, key, throw_on_missing=False, throw_on_resolution_failure=False)
        except OmegaConfBaseException:
            continue
        if isinstance(node, bool) and value.strip().strip("'\"").lower() not in ("true", "false"):
            raise ConfigError(key, f"must be true or false, got {value!r}")


class _DuplicateKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key written twice in one mapping.

    YAML loaders keep the last of two equal keys, so a grid with two ``policy:`` axes would
    silently lose the first.  Keys brought in by a merge (``<<: *anchor``) may be
    overridden: only keys written out in the mapping itself count.
    """

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        mark = key_node.start_mark
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r} (first at line {seen[key].line + 1}); "
                                        "YAML would keep only the last", mark)
                    seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _check_override_duplicates(override: str) -> None:
    """A mapping written twice with the same key in an override (``{policy:[a],policy:[b]}``):
    Hydra's parser keeps the last silently, so it is refused here, naming the key."""
    key, eq, value = override.partition("=")
    if not eq or "{" not in value:
        return
    stack: list[tuple[dict, int]] = []  # (keys seen, index) per open mapping
    quote, token, i = None, "", 0
    grid_index: list[int] = []
    while i < len(value):
        ch = value[i]
        if quote:
            if ch == quote:
                quote = None
            token += ch
        elif ch in "'\"":
            quote = ch
            token += ch
        elif ch == "{":
            stack.append(({}, 0))
            token = ""
        elif ch == ":" and stack:
            name = token.strip().strip("'\"")
            seen = stack[-1][0]
            if name in seen:
                where = _override_key(override)
                if where == "sweep.grids" and grid_index:
                    where = f"sweep.grids[{grid_index[-1]}]"
                raise ConfigError(f"{where}.{name}", "given twice in one mapping of the override; "
                                                     "only the last would count (duplicate axis)")
            seen[name] = True
            token = ""
        elif ch == "}":
            if stack:
                stack.pop()
            token = ""
        elif ch == "[" and not stack:
            grid_index.append(-1)
            token = ""
        elif ch == ",":
            token = ""
        else:
            token += ch
        if ch == "{" and len(stack) == 1 and grid_index:
            grid_index[-1] += 1
        i += 1


_CHECKED: dict[Path, tuple] = {}


def check_yaml_tree(directory: Path) -> None:
    """Parse every yaml file under ``directory`` once (per change): malformed YAML or a
    duplicated key is a ConfigError naming the file, line and column."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    files = sorted(directory.rglob("*.yaml"))
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    if _CHECKED.get(directory) == stamp:
        return
    for path in files:
        try:
            yaml.load(path.read_text(encoding="utf-8"), Loader=_DuplicateKeyLoader)
        except yaml.YAMLError as err:
            raise yaml_error(err, path) from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(str(path), f"cannot be read ({type(err).__name__})") from None
    _CHECKED[directory] = stamp


def yaml_error(err: yaml.YAMLError, path: Path | None = None) -> ConfigError:
    """A YAML error as one line: file, line and column, and what is wrong."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    name = str(path) if path is not None else (getattr(mark, "name", None) or "config")
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return ConfigError(name, f"{where}malformed YAML: {problem}")


def _compose(directory: Path, overrides: list[str], typed: bool = True, choices: dict | None = None) -> DictConfig:
    """Hydra's composition (``typed``: against the root schema); ``choices`` gets the option chosen
    in each group."""
    from hydra import compose as hydra_compose
    from hydra.core.global_hydra import GlobalHydra

    # Someone else's initialize() would make ours fail; the config layer owns Hydra here.
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    # initialize_config_dir() would put a user directory given as hydra.searchpath AFTER the
    # package, so a user's refit of a shipped preset would never be read; the search path is
    # built here with the user directory first (Hydra 1.3's own helpers, as initialize_config_dir).
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path

    from study.config.schema import register

    register(typed)  # the schemas the defaults lists name (study_schema, machine_schema, ...)

    search_path = create_automatic_config_search_path(None, None, str(directory))
    user = _user_dir_for_search()
    if user is not None:
        search_path.prepend("study-user", f"file://{user}")
    Hydra.create_main_hydra2(task_name="study", config_search_path=search_path)
    try:
        cfg = hydra_compose(config_name=CONFIG_NAME, overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    from omegaconf import OmegaConf, open_dict

    if choices is not None:
        choices.update(OmegaConf.to_container(cfg.hydra.runtime.choices))
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _missing_option(err: MissingConfigException) -> ConfigError:
    """``workload=nope`` (or a nested group in a defaults list) -> the group's options."""
    missing = err.missing_cfg_file or ""
    group, _, option = missing.rpartition("/")
    if not group:
        return ConfigError(missing or "config", f"no such config file; {err}")
    from study.config.schema import SCHEMA_SUFFIX

    options = [o for o in (err.options or []) if not o.endswith(SCHEMA_SUFFIX)]  # schemas are no choice
    allowed = ", ".join(options) if options else "none"
    return ConfigError(group.replace("/", "."), f"unknown option {option!r}; allowed: {allowed}")


def _composition_error(err: ConfigCompositionException, directory: Path, overrides: list[str]) -> ConfigError:
    """Name the overridden key and, when it is unknown, the keys its parent has."""
    from omegaconf.errors import OmegaConfBaseException

    cause = err.__cause__
    key = getattr(cause, "full_key", None)
    if not key:
        match = re.search(r"override '([^']+)'", str(err))
        key = match.group(1) if match else "override"
    text = str(cause) if cause is not None else str(err)
    if "not in struct" in text or isinstance(cause, AttributeError):
        return ConfigError(key, f"unknown key; allowed: {_siblings(key, directory, overrides)}")
    if isinstance(cause, OmegaConfBaseException):
        return ConfigError(key, type_message(text.splitlines()[0]))
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if lines and lines[0].startswith("Ambiguous value"):
        # Hydra's own hints, on the one line; its third ("add --multirun") is this CLI's -m
        match = re.search(r"argument '([^'=]+)=", lines[0])
        key = match.group(1) if match else key
        hints = [h.replace("add --multirun to your command line",
                           "use `python -m study sweep -m ...` (a sub-grid)") for h in lines[1:]]
        return ConfigError(key, " ".join([lines[0] + ":", *hints]))
    return ConfigError(key, lines[0] if lines else "cannot compose")


_CONVERT = re.compile(r"Value '(.*)' of type '\w+' could not be converted to (Integer|Float|Boolean|String)")
_WORDS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}


def type_message(text: str) -> str:
    """OmegaConf's "Value 'x' of type 'str' could not be converted to Integer" as "must be an
    integer, got 'x'" (the words every builder uses)."""
    match = _CONVERT.search(text)
    return f"must be {_WORDS[match.group(2)]}, got {match.group(1)!r}" if match else text


def _siblings(key: str, directory: Path, overrides: list[str]) -> str:
    """The keys beside ``key``, read from a composition without the overrides naming it."""
    parent, _, _ = key.rpartition(".")
    # Keep group selections: ``workload=uffd_wp workload.write_rate=1`` must list uffd_wp's keys.
    kept = [o for o in overrides if _override_key(o) != key and "=" in o and not _override_key(o).startswith(key + ".")]
    try:
        cfg = _compose(directory, kept)
    except Exception:  # the other overrides are broken too; the first error is enough
        return "a key of the composed config"
    from omegaconf import DictConfig, OmegaConf

    node = OmegaConf.select(cfg, parent) if parent else cfg
    if isinstance(node, DictConfig):
        return ", ".join(str(k) for k in node.keys()) or "none (empty node)"
    return f"none ({parent} is a {type(node).__name__}, not a mapping)"


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")
