"""Machine presets as files: read one outside a composition, and write a fitted one.

A preset (``conf/machine/<name>.yaml`` or the user's ``machine/<name>.yaml``) starts from
the machine schema through its defaults list; both readers and writers here know that list,
so the rest of the code sees plain machine data.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from study.errors import ConfigError

# the defaults list of a machine preset (study/config/schema.py registers machine_schema)
MACHINE_DEFAULTS = ["machine_schema", "_self_"]


def machine_data(path: Path) -> dict:
    """A preset file as machine data: every field (those the file leaves out at their defaults)."""
    return dataclasses.asdict(load_machine(path))


def load_machine(path: Path):
    """The Machine a preset file describes (its defaults list dropped; keys, types and ranges checked)."""
    from study.config.compose import yaml_error
    from study.engine.machine import Machine

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise yaml_error(err, Path(path)) from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), f"must be a mapping of machine keys, got {type(data).__name__}")
    data.pop("defaults", None)
    return Machine.from_dict(data, prefix=str(path))


def machine_yaml(machine, source: str, comments: str = "") -> str:
    """A fitted machine as preset text: ``comments`` (``#`` lines), the schema's defaults list,
    then every field with ``calibrated: true``, ``source`` and the costs rounded to whole cycles."""
    data = dataclasses.asdict(machine)
    data["calibrated"] = True
    data["source"] = source
    for key, value in data["costs"].items():
        if isinstance(value, dict):
            data["costs"][key] = {k: int(round(v)) for k, v in value.items()}
        else:
            data["costs"][key] = int(round(value))
    return comments + yaml.safe_dump({"defaults": MACHINE_DEFAULTS}, sort_keys=False) + yaml.safe_dump(data, sort_keys=False)
