"""Reading what ``python -m study analyze`` wrote; the report reads nothing else."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from study.analysis.load import read_json
from study.errors import ConfigError
from study.results.files import verify_files


@dataclass
class Inputs:
    path: Path                 # <out>/analysis
    summary: dict              # analysis.json
    tables: dict[str, pd.DataFrame]

    @property
    def metrics(self) -> dict:
        return self.summary.get("metrics", {})

    @property
    def manifest(self) -> dict:
        return self.summary.get("manifest", {})

    def plot(self, name: str) -> dict | None:
        return next((p for p in self.summary.get("plots", []) if p["name"] == name), None)

    def svg(self, name: str) -> str | None:
        record = self.plot(name)
        if not record or record.get("skipped") or not record.get("svg"):
            return None
        return (self.path / "plots" / record["svg"]).read_text()

    def table(self, name: str) -> pd.DataFrame:
        return self.tables.get(name, pd.DataFrame())


def load(out: Path) -> Inputs:
    """The analysis files, checked whole: every file must match the hash analysis.json records."""
    path = Path(out) / "analysis"
    summary_path = path / "analysis.json"
    if not summary_path.exists():
        raise ConfigError("report", f"no analysis at {summary_path}; run `python -m study analyze` first")
    summary = read_json(summary_path, "report")
    if not isinstance(summary, dict) or not isinstance(summary.get("metrics"), dict):
        raise ConfigError("report", f"{summary_path} is not an analysis summary (no metrics); "
                                    "rerun `python -m study analyze`")
    verify_files(path, summary, "report")
    tables = {}
    try:
        for name, file in sorted(summary.get("tables", {}).items()):
            tables[name] = _read_csv(path / file)
        for record in summary.get("plots", []):
            if record.get("csv"):
                tables[f"plot:{record['name']}"] = _read_csv(path / "plots" / record["csv"])
    except (AttributeError, KeyError, TypeError) as err:
        raise ConfigError("report", f"{summary_path} lists its tables or plots wrongly ({err!r})") from None
    return Inputs(path=path, summary=summary, tables=tables)


# ids are opaque strings: one that happens to be all digits (or "12e3") must not become a number
ID_COLUMNS = {"cell_id": str, "pair_id": str}


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=ID_COLUMNS)
    except pd.errors.EmptyDataError:  # a table with no rows and no header
        return pd.DataFrame()
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise ConfigError("report", f"{path} cannot be read as CSV ({type(err).__name__}); "
                                    "rerun `python -m study analyze`") from None
