"""The verdict rule: significance alone never makes a verdict; the ensemble can make it 'depends'."""

import numpy as np
import pandas as pd
import pytest

from study.analysis import uncertainty, verdict


def test_tiny_certain_speedup_is_no_practical_difference():
    # 1.002x with a tight CI (certainly > 1) is below the 2% threshold
    assert verdict.decide(1.002, 1.0015, 1.0025) == verdict.NO_PRACTICAL
    assert verdict.decide(1.002, 1.0015, 1.0025, 1.001, 1.004) == verdict.NO_PRACTICAL
    # a certain 0.983x is also inside the threshold (1/1.02 = 0.9804)
    assert verdict.decide(0.983, 0.982, 0.984, 0.982, 0.985) == verdict.NO_PRACTICAL


def test_clear_wins_and_losses_need_the_whole_range_beyond_the_threshold():
    assert verdict.decide(1.4, 1.39, 1.41, 1.3, 1.5) == verdict.WINS
    assert verdict.decide(0.5, 0.49, 0.51, 0.3, 0.7) == verdict.LOSES
    # the threshold is configurable
    assert verdict.decide(1.03, 1.029, 1.031, 1.025, 1.035, threshold=0.05) == verdict.NO_PRACTICAL


def test_a_verdict_that_flips_inside_the_ensemble_names_what_flips_it():
    # tight Monte Carlo CI on a win, but the ensemble spans a loss
    v = verdict.decide(1.1, 1.09, 1.11, 0.9, 1.3, drivers=["ipi_deliver.core", "page_walk"])
    assert v == "depends on ipi_deliver.core, page_walk"
    assert verdict.category(v) == "depends"


def test_noise_alone_is_unresolved_not_depends():
    # no ensemble: the Monte Carlo CI straddles the threshold
    assert verdict.decide(1.02, 1.0, 1.04) == verdict.UNRESOLVED


def test_drivers_are_the_costs_the_flip_follows():
    # members: the speedup falls with cost "a" and ignores "b"; the flip is reported as depending on "a"
    rng = np.random.default_rng(1)
    a, b = np.exp(rng.uniform(0, 1, 32)), np.exp(rng.uniform(0, 1, 32))
    speed = 1.3 - 0.5 * (np.log(a))           # from 1.3 down to 0.8
    costs = pd.DataFrame({"a": a, "b": b})
    names = uncertainty.drivers(costs, speed)
    assert names[0] == "a" and "b" not in names
    lo, hi = uncertainty.interval(speed[0], speed)
    v = verdict.decide(speed[0], speed[0] * 0.99, speed[0] * 1.01, lo, hi, drivers=names)
    assert v.startswith("depends on a")


def test_first_order_index_separates_a_driver_from_noise():
    rng = np.random.default_rng(2)
    x1, x2 = rng.uniform(size=256), rng.uniform(size=256)
    y = np.exp(3 * x1 + 0.01 * rng.normal(size=256))
    assert uncertainty.first_order(np.log(np.exp(x1)), np.log(y)) > 0.8
    assert uncertainty.first_order(x2, np.log(y)) < 0.1


def test_negative_threshold_is_refused():
    with pytest.raises(ValueError):
        verdict.decide(1.0, 1.0, 1.0, threshold=-0.1)
