"""Hydra's composition behind one call, through its public API; its errors as one ConfigError.

``hydra.initialize_config_dir`` on the study's tree (study.config.paths.config_dir()), whose search
path the study's SearchPathPlugin (hydra_plugins/study_user_config) extends with the user's config
directory, then ``hydra.compose`` against the typed root schema (study.config.schema): keys and
types are checked while composing.  The compose API (not ``@hydra.main``) neither changes
directory nor creates a run directory or ``.hydra/`` folder, so a command writes only what it
means to.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from study.config import paths
from study.errors import ConfigError

if TYPE_CHECKING:  # Hydra loads when a config is composed, not when the CLI starts
    from omegaconf import DictConfig


def compose(overrides: list[str] | tuple[str, ...] = (), conf_dir: Path | str | None = None) -> DictConfig:
    """Compose ``config.yaml`` with Hydra ``overrides``; a bad override or file raises ConfigError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    from study.config.schema import explain, register

    directory = Path(conf_dir) if conf_dir is not None else paths.config_dir()
    overrides = list(overrides)
    check_overrides(overrides)
    user = paths.user_config_dir()
    if (user / f"{paths.CONFIG_NAME}.yaml").is_file():
        raise ConfigError(str(user / f"{paths.CONFIG_NAME}.yaml"),
                          "a user config directory holds presets in group folders (machine/, sweep/, ...), "
                          "not a config.yaml; override defaults with key=value instead")
    register()
    _register_plugin()
    if GlobalHydra.instance().is_initialized():  # someone else's initialize() would make ours fail
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(directory.resolve()), job_name="study", version_base="1.3"):
            return hydra_compose(config_name=paths.CONFIG_NAME, overrides=overrides)
    except yaml.YAMLError as err:
        raise yaml_error(err) from None
    except MissingConfigException as err:
        raise _missing_option(err) from None
    except ConfigCompositionException as err:
        raise _composition_error(err) from None
    except OmegaConfBaseException as err:  # a value refused while merging a file's node
        raise explain(err) from None


def _register_plugin() -> None:
    """Hydra finds the plugin by scanning the ``hydra_plugins`` namespace package, which an
    editable install of setuptools >= 64 hides from that scan (hydra#2359): register it by hand,
    with Hydra's public ``Plugins.register`` (a no-op when the scan found it)."""
    from hydra.core.plugins import Plugins
    from hydra.plugins.search_path_plugin import SearchPathPlugin

    plugins = Plugins.instance()  # scans first: the module below is then the one it loaded
    try:
        from hydra_plugins.study_user_config import StudyUserConfig
    except ModuleNotFoundError:
        raise ConfigError("hydra_plugins.study_user_config", "the study's search-path plugin is not installed (an "
                                                             "install older than it); reinstall: pip install -e .") from None
    name = f"{StudyUserConfig.__module__}.{StudyUserConfig.__qualname__}"
    if name not in (f"{p.__module__}.{p.__qualname__}" for p in plugins.discover(SearchPathPlugin)):
        plugins.register(StudyUserConfig)


def check_overrides(overrides: list[str]) -> None:
    """Hydra's parser on every override (a syntax error names the override's key), and a key
    written twice in one mapping of an override (``{policy:[a],policy:[b]}``) refused naming it:
    Hydra's visitor builds a mapping with ``dict()``, which keeps the last silently
    (hydra/core/override_parser/overrides_visitor.py, visitDictContainer), so its parse tree is
    walked here."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as err:
        key = err.override.split("=", 1)[0].lstrip("+~") if err.override else "override"
        reason = err.message.splitlines()[0] if err.message else "unparsable"
        raise ConfigError(key, f"cannot parse override {err.override!r} ({reason})") from None
    if any(o.key_or_group == "sweep" and (o.is_delete() or o.value() is None) for o in parsed) and any(
            o.key_or_group.startswith("sweep.") for o in parsed):
        # OmegaConf 2.3 fails on an update through a typed null node (omegaconf#1035)
        raise ConfigError("sweep", "is null (~sweep): there is no sweep to set sweep.* keys of; drop ~sweep or "
                                   "choose a sweep, sweep=NAME")
    for override in parsed:
        key, value = override.key_or_group, override.input_line.partition("=")[2]
        if override.is_sweep_override():  # Hydra's hints, said for this CLI
            raise ConfigError(key, f"a sweep ({value}) is one value here: to use it as a list, use "
                                   f"key=[value1,value2]; as a string, quote it: key='{value}'; to sweep over it, "
                                   "use `python -m study sweep -m ...` (a sub-grid)")
        if "{" in value:
            _refuse_duplicate_keys(key, value)


def _refuse_duplicate_keys(key: str, text: str) -> None:
    """Walk Hydra's own parse tree of an override's value (its generated grammar) for a mapping
    that names a key twice; ``key`` names the override's key, ``[i]`` and ``.k`` the way down."""
    from antlr4 import CommonTokenStream, InputStream
    from hydra.grammar.gen.OverrideLexer import OverrideLexer
    from hydra.grammar.gen.OverrideParser import OverrideParser

    lexer = OverrideLexer(InputStream(text))
    lexer.mode(OverrideLexer.VALUE_MODE)
    parser = OverrideParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()  # Hydra's own parse above has accepted it

    def walk(node, where: str) -> None:
        if isinstance(node, OverrideParser.DictContainerContext):
            seen = set()
            for pair in node.dictKeyValuePair():
                name = pair.dictKey().getText().strip("'\"")
                if name in seen:
                    raise ConfigError(f"{where}.{name}", "given twice in one mapping of the override; only the last "
                                                         "would count (duplicate axis)")
                seen.add(name)
                walk(pair.element(), f"{where}.{name}")
        elif isinstance(node, OverrideParser.ListContainerContext):
            for i, element in enumerate(node.element()):
                walk(element, f"{where}[{i}]")
        else:
            for child in node.getChildren() if hasattr(node, "getChildren") else ():
                walk(child, where)

    walk(parser.value(), key)


def yaml_error(err: yaml.YAMLError, path: Path | None = None) -> ConfigError:
    """A YAML error as one line: file, line and column, and what is wrong."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    name = str(path) if path is not None else (getattr(mark, "name", None) or "config")
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return ConfigError(name, f"{where}malformed YAML: {problem}")


def _missing_option(err) -> ConfigError:
    """``workload=nope`` (or a nested group in a defaults list) -> the group's options."""
    from study.config.schema import SCHEMA_SUFFIX

    missing = err.missing_cfg_file or ""
    group, _, option = missing.rpartition("/")
    if not group:
        return ConfigError(missing or "config", f"no such config file; {err}")
    options = [o for o in (err.options or []) if not o.endswith(SCHEMA_SUFFIX)]  # schemas are no choice
    return ConfigError(group.replace("/", "."), f"unknown option {option!r}; allowed: {', '.join(options) or 'none'}")


def _composition_error(err) -> ConfigError:
    """What Hydra could not compose: OmegaConf's exception, when there is one (its ``full_key``,
    ``object_type`` and ``value``), says which key and what its schema allows; else Hydra's words."""
    from omegaconf.errors import OmegaConfBaseException

    from study.config.schema import explain

    cause = err.__cause__ or err.__context__  # a file's node refused while merging: raised in Hydra's except
    if isinstance(cause, OmegaConfBaseException):
        return explain(cause)
    if isinstance(cause, yaml.YAMLError):
        return yaml_error(cause)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return ConfigError("config", lines[0] if lines else "cannot compose")
