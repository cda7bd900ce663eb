"""The calibrated preset reproduces the seed's table, with every parameter inside its prior."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from study.calibration.fit import fit
from study.calibration.priors import PRIORS
from study.calibration.seed_table import headline_changes, seed_table
from study.config import config_dir
from study.engine.machine import Machine
from study.seed import SEED_TABLE as SEED_TABLE_CELLS
from study.config.presets import load_machine

HASWELL = load_machine(config_dir() / "machine" / "haswell_2s.yaml")


def cost(machine, name):
    value = machine.costs
    for part in name.split("."):
        value = getattr(value, part)
    return value


def test_preset_is_calibrated_inside_the_priors():
    assert HASWELL.calibrated
    for p in PRIORS:
        assert p.low <= cost(HASWELL, p.name) <= p.high, p.name


@pytest.fixture(scope="module")
def rows():
    # a different root seed and size than the fit used: the fit must carry over
    return seed_table(HASWELL, replicates=500, rounds=60, root_seed=99)


def test_every_seed_cell_within_three_percent(rows):
    assert len(rows) == 8
    for r in rows:
        assert abs(r.rel_error) < 0.03, r
        assert r.ci_low <= r.model_cycles <= r.ci_high


def test_headline_changes_within_two_points(rows):
    for call, (model, seed) in headline_changes(rows).items():
        assert abs(model - seed) < 0.02, (call, model, seed)


def test_one_thread_policies_agree_within_two_percent(rows):
    by = {(r.call, r.threads, r.policy): r.model_cycles for r in rows}
    for call in ("PROT_READ", "PROT_READ|PROT_WRITE"):
        assert abs(by[call, 1, "relaxed"] / by[call, 1, "strict"] - 1) < 0.02


@pytest.mark.slow
def test_fit_from_the_prior_centres_reaches_the_seed():
    start = dataclasses.replace(HASWELL, calibrated=False)
    result = fit(start, replicates=200, rounds=30)
    assert max(abs(result.residuals)) < 0.03
    for p in PRIORS:
        assert p.low <= result.values[p.name] <= p.high


@pytest.fixture(scope="module")
def ident():
    from study.calibration.fit import identifiability
    return identifiability(HASWELL, replicates=100, rounds=20)


def test_identifiability_names_what_the_seed_pins_and_what_only_priors_set(ident):
    s = ident.singular_values
    assert len(s) == len(SEED_TABLE_CELLS) and np.all(np.diff(s) <= 0)
    # eight cells can pin at most eight combinations of the costs, and pin fewer
    assert 1 <= ident.n_pinned < len(PRIORS)
    status = ident.status()
    # the syscall's fixed work moves every cell: pinned; the page walk, fault and dirty-bit
    # walk never occur in the seed's mprotect calls: their Jacobian columns are zero
    assert status["syscall_mprotect"] == "pinned (in combination)"
    for name in ("page_walk", "fault_entry_exit", "dirty_walk"):
        assert status[name] == "prior only"
        assert np.all(ident.jacobian[:, ident.parameters.index(name)] == 0.0)
    table = ident.as_dict()
    assert [p["name"] for p in table["per_parameter"]] == [p.name for p in PRIORS]
    assert all(p["source"] for p in table["per_parameter"])
    assert len(table["pinned_combinations"]) == ident.n_pinned


def test_every_prior_states_its_source_and_no_path_outside_the_repository():
    import inspect

    import study.calibration.priors as priors_module
    for p in PRIORS:
        assert len(p.source) > 10
        assert p.low <= p.centre <= p.high and p.low > 0   # log space needs positive bounds
    assert "../shared" not in inspect.getsource(priors_module)
