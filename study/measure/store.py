"""Reading a measurement directory (``python -m study measure``'s output) back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from study.engine.machine import Machine
from study.errors import ConfigError
from study.measure.host import HostCpu, HostFacts
from study.workloads.spec import WorkloadSpec, workload_from_dict

REQUIRED = ("cells.parquet", "replicates.parquet", "manifest.json")


@dataclass
class Measurement:
    path: Path
    cells: pd.DataFrame
    replicates: pd.DataFrame
    manifest: dict

    @property
    def host(self) -> str:
        return self.manifest["machine"]["name"]

    def facts(self) -> HostFacts:
        data = dict(self.manifest["host"])
        data["cpus"] = [HostCpu(**c) for c in data["cpus"]]
        return HostFacts(**data)

    def machine(self) -> Machine:
        return Machine.from_dict(self.manifest["machine"])

    def workloads(self) -> dict[str, WorkloadSpec]:
        """Each measured cell's workload, by cell name, in table order."""
        machine = self.machine()
        return {c["name"]: workload_from_dict(dict(c["spec"]), machine, prefix=f"cell {c['name']}")
                for c in self.manifest["cells"]}

    def settings(self) -> dict:
        return self.manifest["measure"]


def load_measurement(path: Path | str) -> Measurement:
    """Load ``outputs/measure/<host>/``; a missing file is a ConfigError naming it."""
    path = Path(path)
    for name in REQUIRED:
        if not (path / name).is_file():
            raise ConfigError("--from", f"{path / name} is missing; run `python -m study measure` first")
    manifest = json.loads((path / "manifest.json").read_text())
    if manifest.get("kind") != "measurement":
        raise ConfigError("--from", f"{path} is not a measurement directory (manifest kind "
                                    f"{manifest.get('kind')!r})")
    return Measurement(path, pd.read_parquet(path / "cells.parquet"), pd.read_parquet(path / "replicates.parquet"),
                       manifest)
