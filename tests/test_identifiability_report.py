"""The analysis carries the calibration's identifiability table and the report prints it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from study.analysis import identifiability
from study.calibration.priors import PRIORS
from study.config import config_dir
from study.report.doc import Para, Table
from study.report.inputs import Inputs
from study.report.sections import identifiability_blocks
from study.config.presets import machine_data

HASWELL = machine_data(config_dir() / "machine" / "haswell_2s.yaml")
SEED = pd.DataFrame([{"call": "PROT_READ", "threads": 1}])


def test_uncalibrated_or_seedless_sweeps_get_no_table():
    assert identifiability.build({"config": {"machine": dict(HASWELL, calibrated=False)}}, SEED)[0].empty
    assert identifiability.build({"config": {"machine": HASWELL}}, pd.DataFrame())[0].empty


def test_the_report_shows_singular_values_and_what_only_priors_set():
    frame, summary = identifiability.build({"config": {"machine": HASWELL}}, SEED)
    assert list(frame["name"]) == [p.name for p in PRIORS]
    assert len(summary["singular_values"]) == 8
    blocks = identifiability_blocks(Inputs(Path("."), {"identifiability": summary}, {"identifiability": frame}))
    para, table = blocks
    assert isinstance(para, Para) and isinstance(table, Table)
    assert f"{summary['singular_values'][0]:.3g}" in para.text
    assert "`page_walk`" in para.text          # never in the seed's calls: its prior alone sets it
    assert len(table.rows) == len(PRIORS)
