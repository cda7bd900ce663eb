"""The statistics on their own: Holm by hand, bootstrap coverage, paired tests, crossings."""

import numpy as np
import pandas as pd
import pytest

from study.analysis import crossover, grid, schema, stats
from study.workloads.mprotect_toggle import MprotectToggle


def test_holm_matches_a_hand_computation():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    p = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_leaves_nan_out_of_the_family():
    np.testing.assert_allclose(stats.holm([np.nan, 0.01, 0.02]), [np.nan, 0.02, 0.02])
    np.testing.assert_allclose(stats.holm([0.4, 0.6]), [0.8, 0.8])
    np.testing.assert_allclose(stats.holm([0.9, 0.95, 0.5]), [1.0, 1.0, 1.0])
    assert np.isnan(stats.holm([np.nan])).all()


def test_holm_is_never_below_the_raw_p_and_keeps_its_order():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.2, 50)
    adj = stats.holm(p)
    assert (adj >= p).all()
    order = np.argsort(p)
    assert (np.diff(adj[order]) >= 0).all()


def test_paired_bootstrap_ratio_ci_covers_the_true_ratio():
    # strict ~ N(3000, 300), relaxed = strict * 0.6 + noise: the ratio of means is 1/0.6
    rng = np.random.default_rng(2022)
    trials, n, covered = 300, 20, 0
    for t in range(trials):
        a = rng.normal(3000, 300, n)
        b = a * 0.6 + rng.normal(0, 60, n)
        idx = stats.resample_indices(n, stats.rng_for(t), 1000)
        low, high = stats.percentile_ci(stats.ratio_of_means_boot(a, b, idx))
        covered += low <= 1 / 0.6 <= high
    assert 0.88 <= covered / trials <= 0.99


def test_bootstrap_is_seeded_by_key_only():
    a, b = np.arange(1.0, 11.0), np.arange(2.0, 12.0)
    draw = lambda key: stats.ratio_of_means_boot(a, b, stats.resample_indices(10, stats.rng_for(key), 200))
    np.testing.assert_array_equal(draw("p1"), draw("p1"))
    assert not np.array_equal(draw("p1"), draw("p2"))


def test_paired_test_finds_a_known_effect():
    rng = np.random.default_rng(3)
    base = rng.normal(5000, 500, 16)           # shared draws: common random numbers
    a = base + 400 + rng.normal(0, 20, 16)     # strict costs 400 cycles more
    test = stats.paired_test(a, base)
    assert test.n == 16
    assert test.mean_diff == pytest.approx(400, abs=20)
    assert test.p_t < 1e-10
    assert test.d_z > 10
    assert test.rank_biserial == 1.0
    assert test.p_wilcoxon < 1e-3


def test_paired_test_rejects_at_the_nominal_rate_under_the_null():
    rng = np.random.default_rng(4)
    rejected = sum(stats.paired_test(rng.normal(0, 1, 12), rng.normal(0, 1, 12)).p_t < 0.05 for _ in range(400))
    assert 0.01 <= rejected / 400 <= 0.10


def test_paired_test_degenerate_cases():
    same = stats.paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert (same.p_t, same.d_z, same.rank_biserial, same.p_wilcoxon) == (1.0, 0.0, 0.0, 1.0)
    shifted = stats.paired_test([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert shifted.p_t == 0.0 and shifted.d_z == np.inf
    assert stats.paired_test([np.nan], [1.0]).n == 0


def test_rank_biserial_by_hand():
    # |d| ranks: 1 -> 1, 2 -> 2, 3 -> 3; W+ = 1 + 3, W- = 2
    assert stats.rank_biserial(np.array([1.0, -2.0, 3.0])) == pytest.approx((4 - 2) / 6)


def test_mean_ci_and_relative_half_width():
    mean, low, high = stats.mean_ci([10.0, 12.0, 14.0])
    assert mean == 12.0 and low < 12 < high
    assert high - 12 == pytest.approx(4.302653 * 2 / np.sqrt(3), rel=1e-5)  # t(0.975, 2) * sd / sqrt(n)
    assert stats.mean_ci([5.0])[1:] == (-np.inf, np.inf)
    assert stats.relative_half_width(100.0, 95.0, 105.0) == pytest.approx(0.05)
    assert stats.relative_half_width(0.0, 0.0, 0.0) == 0.0
    assert stats.relative_half_width(0.0, -1.0, 1.0) == np.inf


def test_first_crossing_interpolates_in_log_speedup():
    x = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    ratio = np.exp(-2.0 * (x - 0.6))             # log-linear: crosses 1 at exactly 0.6
    assert crossover.first_crossing(x, ratio)[0] == pytest.approx(0.6)
    assert crossover.first_crossing(x, np.full(5, 1.5))[0] == np.inf
    assert crossover.first_crossing(x, np.full(5, 0.8))[0] == -np.inf
    # several rows at once (bootstrap draws)
    rows = np.vstack([np.exp(-2.0 * (x - c)) for c in (0.3, 0.6, 0.9)])
    np.testing.assert_allclose(crossover.first_crossing(x, rows), [0.3, 0.6, 0.9])


def _synthetic_grid(rng):
    """A paired table over remote_write_share x working_set with a known boundary per row."""
    rows, boot = [], {}
    for ws, x0 in ((0, None), (256, 0.6), (1024, 0.2)):
        for x in (0.0, 0.25, 0.5, 0.75, 1.0):
            speedup = 1.5 if x0 is None else float(np.exp(-2.0 * (x - x0)))
            pair = f"p{ws}-{x}"
            boot[pair] = speedup * np.exp(rng.normal(0, 0.01, 500))
            rows.append({"pair_id": pair, "machine_label": "m", "workload": "mprotect_toggle",
                         "workload.threads": 4.0, "workload.placement": "core",
                         "workload.remote_write_share": x, "workload.working_set": float(ws),
                         "speedup": speedup})
        # an off-slice point: another thread count must not leak into the slice
        rows.append({"pair_id": f"other{ws}", "machine_label": "m", "workload": "mprotect_toggle",
                     "workload.threads": 2.0, "workload.placement": "core", "workload.remote_write_share": 0.0,
                     "workload.working_set": float(ws), "speedup": 0.5})
        boot[f"other{ws}"] = np.full(500, 0.5)
    return pd.DataFrame(rows), boot


def test_crossover_finds_the_boundary_on_a_synthetic_grid():
    frame, boot = _synthetic_grid(np.random.default_rng(5))
    meaning = schema.Meaning({"workloads": {"mprotect_toggle": MprotectToggle.describe()}})
    found = crossover.find(frame, boot, meaning)
    table = found.boundary.set_index("y_value")
    assert set(table["x"]) == {"workload.remote_write_share"}
    assert set(table["y"]) == {"workload.working_set"}
    assert table.loc[0.0, "status"] == crossover.WINS_THROUGHOUT
    for ws, x0 in ((256.0, 0.6), (1024.0, 0.2)):
        assert table.loc[ws, "status"] == crossover.CROSSES
        assert table.loc[ws, "boundary"] == pytest.approx(x0, abs=1e-9)
        assert table.loc[ws, "boundary_low"] <= x0 <= table.loc[ws, "boundary_high"]
    x, y, part = found.grids[("m", "mprotect_toggle")]
    assert (part["workload.threads"] == 4.0).all() and len(part) == 15


def test_slice_for_keeps_the_best_covered_subgrid_and_treats_nan_as_a_value():
    frame = pd.DataFrame({
        "workload.threads": [1.0, 2.0, 4.0, 2.0, 2.0],
        "workload.placement": ["core", "core", "core", "smt", "core"],
        "workload.write_rate": [np.nan, np.nan, np.nan, np.nan, 0.5],
    })
    part = grid.slice_for(frame, ["workload.threads"])
    assert list(part["workload.threads"]) == [1.0, 2.0, 4.0]
    assert part["workload.write_rate"].isna().all()
