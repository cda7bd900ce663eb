"""The whole pipeline through the real CLI: sweep=quick -> ensemble -> conditions -> analyze -> report."""

import json
import re
import subprocess
import sys

import pytest

from study.report import content, inputs, pdf
from study.seed import SEED_TABLE


def _study(*args, cwd, env):
    done = subprocess.run([sys.executable, "-m", "study", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"python -m study {' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_quick_sweep_to_report(tmp_path, study_env):
    # run from elsewhere, with this checkout on PYTHONPATH (conftest's study_env): the CLI
    # must not depend on the working directory
    out = tmp_path / "outputs"
    _study("sweep", "sweep=quick", f"run.output_dir={out}", "ray.num_cpus=2", cwd=tmp_path, env=study_env)
    _study("ensemble", "--sweep", "quick", "--out", str(out), "--members", "4", "--serial", cwd=tmp_path,
           env=study_env)
    _study("conditions", "--sweep", "quick", "--out", str(out), "--replicates", "16", "--rounds", "3", "--serial",
           cwd=tmp_path, env=study_env)
    _study("analyze", "--sweep", "quick", "--out", str(out), cwd=tmp_path, env=study_env)
    _study("report", "--out", str(out), cwd=tmp_path, env=study_env)

    metrics = json.loads((out / "metrics.json").read_text())
    manifest = json.loads((out / "sweep" / "quick" / "manifest.json").read_text())
    html = (out / "report" / "report.html").read_text(encoding="utf-8")
    data = (out / "report" / "report.pdf").read_bytes()

    # every section, in both renderings
    for title in content.SECTION_TITLES:
        assert f"{title.replace(chr(39), '&#x27;')}</h2>" in html, title
    assert data.startswith(b"%PDF-")
    titles = list(content.SECTION_TITLES)
    cut = [anchor for anchor, _, _ in content.SECTIONS].index(content.OUTLINE_AFTER) + 1
    assert pdf.headings(content.build(inputs.load(out))) == [*titles[:cut], "Contents", *titles[cut:]]

    # the ensemble's model interval reaches the headlines, and its members reproduce the published table
    ensemble = json.loads((out / "ensemble" / "haswell_2s.json").read_text())
    assert ensemble["accepted"] == 4
    assert all(max(abs(e) for e in m["cell_errors"]) <= 0.03 for m in ensemble["members"])
    seed_setting = metrics["speedup"]["seed_setting"]
    assert seed_setting["model_low"] is not None and seed_setting["model_low"] <= seed_setting["model_high"]
    assert "model [" in html
    # each headline carries its conditions, on page 1 too
    assert set(metrics["conditions"]) == set(metrics["speedup"])
    page1 = html.split('id="question"')[0]
    assert page1.count("Conditions at the fitted costs:") == len(metrics["speedup"])

    # the seed table: all 8 cells from the sweep, each with its interval
    assert len(metrics["seed"]) == len(SEED_TABLE)
    for cell in metrics["seed"].values():
        assert cell["ci_low"] <= cell["model"] <= cell["ci_high"]
    for seed in SEED_TABLE:
        assert re.search(rf"mprotect\({re.escape(seed.call)}\)</td><td class=\"r\">{seed.threads}</td>"
                         rf"<td class=\"l\">{seed.policy}</td><td class=\"r\">{int(seed.cycles)}</td>", html), seed

    # the machine is marked exactly as the sweep's config says
    calibrated = manifest["config"]["machine"]["calibrated"]
    assert ("uncalibrated preset" in html) == (not calibrated)

    # provenance comes from the manifest
    assert str(manifest["root_seed"]) in html
    assert manifest["code_fingerprint"][:12] in html

    # quick has no dirty-ratio, crossover grid or ablations: said, not failed
    assert "is not drawn" in html
    assert "cannot be attributed" in html
    assert not re.search(r'(?:src|href)\s*=\s*"(?!data:|#)', html)
