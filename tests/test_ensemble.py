"""The ensemble of cost parameter sets: every member reproduces the seed cells; deterministic."""

import json

import numpy as np
import pytest

from study.calibration import ensemble
from study.calibration.fit import cost_value
from study.calibration.priors import PRIORS
from study.config import build_cell, compose
from study.seed import SEED_MACHINE


@pytest.fixture(scope="module")
def built():
    machine = build_cell(compose([f"machine={SEED_MACHINE}"])).machine
    return machine, ensemble.build(machine, members=5, replicates=100, rounds=20)


def test_every_member_reproduces_the_seed_cells_within_the_tolerance(built):
    machine, ens = built
    assert len(ens.members) == 5
    assert ens.members[0].values == {p.name: cost_value(machine, p.name) for p in PRIORS}
    for m in ens.members:
        assert np.max(np.abs(m.cell_errors)) <= ens.settings["tolerance"]
        for p in PRIORS:
            assert p.low <= m.values[p.name] <= p.high


def test_members_differ_and_the_file_round_trips(built):
    machine, ens = built
    distinct = {json.dumps(m.values, sort_keys=True) for m in ens.members}
    assert len(distinct) == len(ens.members)
    data = json.loads(json.dumps(ens.as_dict()))
    again = ensemble.from_dict(data)
    assert again.digest() == ens.digest()
    assert len(again.machines(machine)) == len(ens.members)
    assert {s["name"] for s in data["spread"]} == {p.name for p in PRIORS}


def test_deterministic(built):
    machine, ens = built
    other = ensemble.build(machine, members=3, replicates=100, rounds=20)
    assert [m.values for m in other.members] == [m.values for m in ens.members[:3]]


def test_run_members_uses_the_same_streams_for_every_member(built):
    from study.runner.ensemble import EnsembleRun, run_members
    from study.workloads import simulate_cell

    machine, ens = built
    cell = build_cell(compose([f"machine={SEED_MACHINE}", "workload.threads=2", "policy=strict"]))
    run = EnsembleRun(replicates=3, rounds=5)
    machines = ens.machines(cell.machine)[:2]
    results = run_members(cell, [machines[0], machines[0], machines[1]], run)
    key = "total_cycles_per_round"
    np.testing.assert_array_equal(results[0].metrics[key], results[1].metrics[key])
    # the lanes are exactly the members run alone, after the cell's warm-up
    for result, machine in zip(results, [machines[0], machines[0], machines[1]]):
        direct = simulate_cell(machine, cell.workload, cell.policy, replicates=3, rounds=5, seed=cell.seed(0),
                               max_samples=0, kernel=cell.kernel, warmup_rounds=cell.run.warmup_rounds)
        np.testing.assert_array_equal(result.metrics[key], direct.metrics[key])
    assert not np.array_equal(results[0].metrics[key], results[2].metrics[key])
    one_by_one = run_members(cell, [machines[0], machines[1]], run, simulate=simulate_cell)
    np.testing.assert_array_equal(one_by_one[1].metrics[key], results[2].metrics[key])


@pytest.mark.parametrize("argv, key", [(["--members", "1"], "--members"), (["--tolerance", "2"], "--tolerance"),
                                       (["--replicates", "1"], "--replicates"), (["--sweep", "nope"], "--sweep"),
                                       (["--num-cpus", "0"], "--num-cpus"), (["--num-cpus", "100000"], "--num-cpus"),
                                       (["--members", "1000000000"], "--members"),
                                       (["--rounds", "1000000000000"], "--rounds"),
                                       (["--replicates", "100000"], "--replicates")])
def test_ensemble_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, key):
    from study.cli import ensemble as cli

    assert cli.main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {key}")
    assert not any(tmp_path.iterdir())
