"""``python -m study analyze`` on a synthetic sweep that follows the sweep's input contract."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from study.analysis import attribution, paired, schema, seedtable
from study.analysis.arms import Arms
from study.analysis.load import load_sweep
from synthetic import make_sweep
from study.cli import analyze as analyze_cli
from study.policies import RELAXED, SWITCHES
from study.seed import SEED_TABLE


@pytest.fixture(scope="module")
def out(synthetic_out):
    return synthetic_out  # conftest: the full synthetic sweep, analyzed (read-only)


@pytest.fixture(scope="module")
def sweep(out):
    return load_sweep(out, "synthetic")


def test_roles_come_from_the_switches_not_the_name(sweep):
    roles = sweep.cells.groupby("pair_id")["role"].apply(set)
    expected = {"strict", "relaxed", "unsafe"} | {schema.ablation_role(i) for i in sweep.meaning.ideas}
    # every patch the relaxed preset carries is an idea of its own
    assert set(sweep.meaning.ideas) == {s for s in SWITCHES if getattr(RELAXED, s)}
    assert all(r == expected for r in roles)
    # every ablation keeps the preset's name, as the sweep writes it
    assert set(sweep.cells.loc[sweep.cells["role"].str.startswith("relaxed-no-"), "policy"]) == {"relaxed"}


def test_writes_every_table_plot_and_metrics(out):
    analysis = out / "analysis"
    summary = json.loads((analysis / "analysis.json").read_text())
    for name in summary["tables"].values():
        assert (analysis / name).stat().st_size > 0
    drawn = [p for p in summary["plots"] if not p["skipped"]]
    # the sensitivity figure needs the ensemble's member runs, which this synthetic sweep has not
    needs_ensemble = {p["name"]: p for p in summary["plots"] if p["name"] == "sensitivity"}
    assert needs_ensemble["sensitivity"]["skipped"] and "ensemble" in needs_ensemble["sensitivity"]["note"]
    assert {p["name"] for p in drawn} == {p["name"] for p in summary["plots"]} - set(needs_ensemble), \
        "the full grid draws every plot"
    for p in drawn:
        svg = (analysis / "plots" / p["svg"]).read_text()
        assert svg.startswith("<?xml") and "<dc:date>" not in svg
        csv = pd.read_csv(analysis / "plots" / p["csv"])
        assert len(csv) > 0 and not any(c.startswith("workload.") for c in csv.columns)
    metrics = json.loads((out / "metrics.json").read_text())  # strict JSON: no NaN or Infinity
    assert metrics["grid"]["settings_compared"] == 45
    assert metrics["violations_per_round_max"]["relaxed"] == 0.0
    assert metrics["violations_per_round_max"]["unsafe"] > 0


def test_every_headline_number_has_its_interval(out):
    metrics = json.loads((out / "metrics.json").read_text())

    def walk(node, path):
        if isinstance(node, dict) and ("value" in node or "model" in node):
            assert {"ci_low", "ci_high"} <= set(node), path
            return
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}")

    for section in ("seed", "seed_reduction_2t", "speedup", "crossover", "attribution"):
        assert metrics[section], section
        walk(metrics[section], section)


def test_paired_comparisons_find_the_synthetic_effects(out):
    table = pd.read_csv(out / "analysis" / "paired.csv")
    main = table[table["metric"] == schema.MAIN_METRIC]
    one_thread = main[main["workload.threads"] == 1]
    assert (one_thread["verdict"] == paired.NO_DIFFERENCE).all()
    seed2 = main[(main["workload"] == "mprotect_toggle") & (main["workload.threads"] == 2)
                 & (main["workload.remote_access_rate"] == 0)]
    assert (seed2["verdict"] == paired.WINS).all()
    assert (seed2["speedup_low"] > 1).all()
    losing = main[main["verdict"] == paired.LOSES]
    assert set(losing["workload.working_set"]) <= {256, 1024}
    assert (losing["speedup_high"] < 1).all()
    assert ((main["p_holm"] >= main["p_t"]) | main["p_t"].isna()).all()


def test_crossover_boundary_is_located_where_the_toy_puts_it(out):
    table = pd.read_csv(out / "analysis" / "crossover.csv")
    toggle = table[table["workload"] == "mprotect_toggle"].set_index("y_value")
    assert toggle.loc[0, "status"] == "relaxed wins over the whole range"
    # the toy loses at working_set 1024 already at remote_write_share 0.25, not at 0
    assert 0.0 < toggle.loc[1024, "boundary"] < 0.25
    assert toggle.loc[1024, "boundary_low"] <= toggle.loc[1024, "boundary"] <= toggle.loc[1024, "boundary_high"]
    assert toggle.loc[256, "boundary"] > toggle.loc[1024, "boundary"]


def test_attribution_gives_the_seed_loop_to_relaxed_flush_on_upgrade(sweep):
    arms = Arms(sweep.replicates, sweep.cells)
    main = paired.main_table(paired.compare(sweep.cells, arms))
    per_pair, pooled = attribution.attribute(sweep.cells, arms, main, sweep.meaning.ideas)
    seed = seedtable.seed_cells(sweep.cells)
    pair = seed.loc[seed["workload.threads"] == 2, "pair_id"].iloc[0]
    shares = per_pair[per_pair["pair_id"] == pair].set_index("idea")
    assert shares.loc["relaxed_flush_on_upgrade", "share"] == pytest.approx(1.0, abs=0.02)
    for idea in ("no_flush_clean_wrprotect", "uffd_unprotect_mkdirty", "clean_anon_writable"):
        assert abs(shares.loc[idea, "share"]) < 0.02
    madv = pooled[pooled["workload"] == "madv_free"].set_index("idea")
    assert madv.loc["no_flush_clean_wrprotect", "share_low"] > 0.2  # the toy's patch 12 matters there
    assert (pooled["share_low"] <= pooled["share"]).all() and (pooled["share"] <= pooled["share_high"]).all()


def test_seed_table_has_all_eight_cells(out):
    table = pd.read_csv(out / "analysis" / "seed_table.csv")
    assert len(table) == len(SEED_TABLE) == 8
    assert set(zip(table["call"], table["threads"], table["policy"])) == {(s.call, s.threads, s.policy)
                                                                         for s in SEED_TABLE}
    assert (table["ci_low"] <= table["model_cycles"]).all() and (table["model_cycles"] <= table["ci_high"]).all()
    np.testing.assert_allclose(table["rel_error"], table["model_cycles"] / table["seed_cycles"] - 1)
    assert (table["machine_label"] == "haswell_2s (uncalibrated preset), kernel rfc_base").all()


def test_same_sweep_gives_byte_identical_files(out, tmp_path):
    shutil.copytree(out / "sweep", tmp_path / "sweep")
    assert analyze_cli.main(["--sweep", "synthetic", "--out", str(tmp_path)]) == 0
    first = sorted(p.relative_to(out) for p in (out / "analysis").rglob("*") if p.is_file())
    second = sorted(p.relative_to(tmp_path) for p in (tmp_path / "analysis").rglob("*") if p.is_file())
    assert first == second
    for rel in first + [type(first[0])("metrics.json")]:
        assert (out / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_a_small_sweep_degrades_to_notes(tmp_path):
    make_sweep(tmp_path, name="small", grid="small", replicates=4, ablations=False)
    assert analyze_cli.main(["--sweep", "small", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    plots = {p["name"]: p for p in summary["plots"]}
    for name in ("dirty_ratio", "crossover", "attribution"):
        assert plots[name]["skipped"] and plots[name]["note"], name
        assert not (tmp_path / "analysis" / "plots" / f"{name}.svg").exists()
    # a panel per workload the sweep ran (only the seed's loop here)
    assert [n for n in plots if n.endswith("_panel")] == ["mprotect_toggle_panel"]
    for name in ("seed_table", "latency_threads", "speedup_threads", "latency_ecdf", "cycle_breakdown",
                 "mprotect_toggle_panel"):
        assert not plots[name]["skipped"], name


def test_missing_sweep_is_a_one_line_error(tmp_path, capsys):
    assert analyze_cli.main(["--sweep", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "sweep=nope" in err and err.count("\n") == 1


def test_seed_table_json_stands_in_only_when_asked(tmp_path):
    make_sweep(tmp_path, name="small", grid="small", replicates=4, ablations=False)
    sweep = load_sweep(tmp_path, "small")
    cells = sweep.cells[sweep.cells["workload.threads"] != 2]  # drop the seed's 2-thread cells
    records = [dict(call=s.call, threads=s.threads, policy=s.policy, seed_cycles=s.cycles, model_cycles=s.cycles,
                    ci_low=s.cycles - 1, ci_high=s.cycles + 1, rel_error=0.0) for s in SEED_TABLE]
    path = tmp_path / "seed_table.json"
    path.write_text(json.dumps(records))
    assert len(seedtable.build(cells, None)) == 4
    table = seedtable.build(cells, path)
    assert len(table) == 8 and table["seed_in_ci"].all()


def test_a_knob_the_sweep_varies_keeps_its_settings_apart(tmp_path):
    """A legal axis the analysis once did not know (workload.on_cpu_share) is read from the sweep's
    own columns: two settings, two comparisons, each drawn as its own point."""
    from study.runner import SerialExecutor, plan, run

    p = plan(["sweep=quick", f"run.output_dir={tmp_path}", "run.replicates=4", "run.batch_replicates=4",
              "run.rounds=4", "workload.threads=4", "workload.working_set=64"], name="cpu",
             grid={"workload.on_cpu_share": [0.5, 1.0], "policy": ["strict", "relaxed"]})
    run(p, executor=SerialExecutor(), progress=False, log=lambda _: None)
    assert analyze_cli.main(["--sweep", "cpu", "--out", str(tmp_path)]) == 0
    sweep = load_sweep(tmp_path, "cpu")
    assert "workload.on_cpu_share" in schema.varied_knobs(sweep.cells)
    compared = pd.read_csv(tmp_path / "analysis" / "paired.csv")
    main = compared[compared["metric"] == schema.MAIN_METRIC]
    assert sorted(main["workload.on_cpu_share"]) == [0.5, 1.0] and main["pair_id"].nunique() == 2
    # the settings differ, and so do their numbers: an off-CPU thread misses shootdowns
    assert main["control_mean"].nunique() == 2


def test_a_crossover_between_far_grid_points_is_not_interpolated():
    """Between 2 and 16 threads a log-linear 3.3 would be invented: the boundary is the bracket."""
    from study.analysis import crossover

    xs = np.array([1.0, 2.0, 16.0])
    ratio = np.array([1.5, 1.2, 0.5])
    assert crossover.bracket(xs, ratio) == (2.0, 16.0)
    assert not crossover.close(2.0, 16.0, 15.0)
    assert crossover.close(0.25, 0.5, 1.0) and crossover.close(0.0, 0.25, 1.0) and not crossover.close(0.0, 0.5, 1.0)
    assert np.isnan(crossover.bracket(xs, np.array([0.9, 0.8, 0.7]))[0])   # below 1 from the start


def test_the_toys_crossover_is_interpolated_between_close_points(out):
    table = pd.read_csv(out / "analysis" / "crossover.csv")
    crossing = table[table["status"] == "crosses"]
    assert len(crossing) and {"below", "above", "interpolated"} <= set(table)
    for r in crossing.itertuples():
        assert r.below < r.boundary <= r.above
        assert r.interpolated == (r.above / r.below <= 2.0 if r.below > 0 else (r.above - r.below) <= 0.25 * (r.x_max - r.x_min))


def test_another_sweep_never_overwrites_the_default_pipelines_analysis(tmp_path, capsys):
    make_sweep(tmp_path, name="synthetic", grid="small", replicates=4, samples=10)
    held = tmp_path / "analysis"
    held.mkdir()
    (held / "analysis.json").write_text(json.dumps({"sweep": "default"}))
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert analyze_cli.main(["--sweep", "synthetic", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --into:") and "default pipeline" in err[0]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    assert not (tmp_path / "metrics.json").exists()
    into = tmp_path / "mine"
    assert analyze_cli.main(["--sweep", "synthetic", "--out", str(tmp_path), "--into", str(into)]) == 0
    assert (into / "analysis" / "analysis.json").is_file() and (into / "metrics.json").is_file()
    assert json.loads((held / "analysis.json").read_text()) == {"sweep": "default"}
