"""The workload registry: each workload is one class, complete, with its option file."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
import yaml

from study.config import config_dir
from study.params import param
from study.workloads import WORKLOADS
from study.workloads.spec import Call, WorkloadSpec, problems


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_registered_workload_is_complete(name):
    cls = WORKLOADS[name]
    assert problems(cls) == []
    assert cls().name == name
    json.dumps(cls.describe())   # the manifest carries it


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_workload_has_its_option_file_with_known_keys(name):
    data = yaml.safe_load((config_dir() / "workload" / f"{name}.yaml").read_text())
    assert data["name"] == name
    fields = {f.name for f in dataclasses.fields(WORKLOADS[name])}
    assert set(data) - {"defaults"} <= fields


def _incomplete(**overrides):
    """A workload made for the test (never registered: it has no name)."""

    @dataclass(frozen=True)
    class Sketch(WorkloadSpec):
        spin: int = param(1, "steps", "steps the sketch spins", low=0)
        CALLS: ClassVar[dict] = {"spin": Call("a spin", "nothing at all")}
        TITLE: ClassVar[str] = "a sketch"
        ABOUT: ClassVar[str] = "a sketch"

        def run_round(self, d, work, running):
            pass

        def loop_steps(self):
            return self.spin + 1

    for key, value in overrides.items():
        setattr(Sketch, key, value)
    return Sketch


def test_the_check_names_what_a_workload_lacks():
    assert problems(_incomplete()) == []
    assert "Sketch" not in {c.__name__ for c in WORKLOADS.values()}

    @dataclass(frozen=True)
    class NoDoc(_incomplete()):
        bare: int = 3   # a knob declared without unit and doc

    assert problems(NoDoc) == ["knob bare: no unit or doc (declare it with study.params.param)"]
    assert any("loop_steps" in p for p in problems(_incomplete(loop_steps=WorkloadSpec.loop_steps)))
    assert any("loop_steps" in p for p in problems(_incomplete(loop_steps=lambda self: 0)))
    assert any("events_per_round" in p for p in problems(_incomplete(events_per_round=lambda self, n: 0)))
    assert any("CALLS" in p for p in problems(_incomplete(CALLS={})))
    assert any("not a knob" in p for p in problems(_incomplete(CROSSOVER=("workload.nope",))))
