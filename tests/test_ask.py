"""``python -m study ask``: one question in one command -- strict, relaxed and each patch off at
every setting asked, run and answered; cached; nothing of the default pipeline touched."""

from __future__ import annotations

import re

import pytest

from study.cli import ask

SMALL = ["run.replicates=16", "run.batch_replicates=16", "run.rounds=4", "run.warmup_rounds=1", "run.adaptive=false"]


def test_a_question_is_answered_per_setting_with_why_and_nothing_else_is_written(tmp_path, capsys):
    words = ["workload=mprotect_toggle", "workload.threads=2,4", "kernel=rfc_base,mainline", *SMALL]
    assert ask.main([*words, "--out", str(tmp_path), "--serial"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("mprotect_toggle on ")]
    assert len(lines) == 4, out   # 2 kernels x 2 thread counts
    for line in lines:
        assert re.search(r"threads=[24]: \d+\.\d+\u00d7 \[[\d.]+, [\d.]+\] \u2014 ", line), line
    assert out.count("  why: relaxed costs") == 4
    # the question's cells only: no analysis, no metrics.json, no report of the default pipeline
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]
    (name,) = [p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()]
    assert name.startswith("ask-")
    # the same question in another word order is the same directory, and reuses every cell
    again = [words[2], words[0], words[1], *SMALL]
    assert ask.main([*again, "--out", str(tmp_path), "--serial"]) == 0
    second = capsys.readouterr()
    assert [p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()] == [name]
    assert re.search(r"reused (\d+) cells, computing 0", second.err), second.err


@pytest.mark.parametrize("words, key", [
    (["policy=strict", "workload.threads=2,4"], "policy"),
    (["policy.without=each"], "policy.without"),
    (["run.output_dir=/tmp/x"], "run.output_dir"),
    (["workload.threads"], "workload.threads"),
    (["workload.threads=2,4", "--num-cpus", "0"], "--num-cpus"),
    (["workload.threads=1000"], "workload.threads"),
])
def test_bad_questions_are_one_line_and_write_nothing(words, key, tmp_path, capsys):
    assert ask.main([*words, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {key}"), err
    assert not (tmp_path / "out").exists()


def test_the_question_names_its_directory_whatever_the_order():
    a = ask.question_name(["kernel=mainline", "run.rounds=4"], {"workload.threads": [2, 4]})
    b = ask.question_name(["run.rounds=4", "kernel=mainline"], {"workload.threads": [2, 4]})
    assert a == b and a != ask.question_name(["kernel=mainline"], {"workload.threads": [2, 4]})
