"""``python -m study report``: one self-contained HTML file and a PDF, same content, deterministic."""

import re
import shutil

import pytest

from synthetic import make_sweep
from study.cli import analyze as analyze_cli
from study.cli import report as report_cli
from study.report import content, inputs, numbers, pdf
from study.seed import SEED_TABLE


@pytest.fixture(scope="module")
def out(synthetic_out):
    return synthetic_out  # conftest: the full synthetic sweep, analyzed and reported (read-only)


@pytest.fixture(scope="module")
def html(out):
    return (out / "report" / "report.html").read_text(encoding="utf-8")


def test_html_has_every_section_in_order(html):
    positions = [html.find(f"{title}</h2>") for title in (t.replace("'", "&#x27;") for t in content.SECTION_TITLES)]
    assert all(p > 0 for p in positions), dict(zip(content.SECTION_TITLES, positions))
    assert positions == sorted(positions)


def test_html_is_self_contained(html):
    assert not re.search(r'(?:src|href)\s*=\s*"(?!data:|#)', html), "only data: URIs and in-page anchors"
    for forbidden in ("<script", "<link", "@import", "url(", "<iframe"):
        assert forbidden not in html.lower(), forbidden
    # every drawn figure is embedded
    # 12: one panel per workload (three), the verdict map and eight more; the sensitivity figure
    # needs ensemble runs (none here)
    assert html.count('src="data:image/svg+xml;base64,') == 12


def test_seed_table_reproduced_in_full(html):
    start = html.find("The seed&#x27;s table reproduced</h2>")
    section = html[start:html.find("Scaling with threads and placement</h2>")]
    rows = re.findall(r"<tr><td class=\"l\">mprotect\((PROT_READ(?:\|PROT_WRITE)?)\)</td><td class=\"r\">(\d)</td>"
                      r"<td class=\"l\">(\w+)</td><td class=\"r\">(\d+)</td>", section)
    assert {(c, int(t), p, int(s)) for c, t, p, s in rows} == {(s.call, s.threads, s.policy, int(s.cycles))
                                                              for s in SEED_TABLE}


def test_uncalibrated_machine_is_marked(html):
    assert 'class="note">Uncalibrated machine preset' in html
    assert html.count("haswell_2s (uncalibrated preset)") >= 5


def test_headline_numbers_carry_intervals(html):
    section = html[html.find("Headline numbers</h2>"):html.find("The question and the model</h2>")]
    items = re.findall(r"<li>(.*?)</li>", section, flags=re.S)
    assert len(items) >= 8
    for item in items:
        if "Over the grid" in item or item.startswith(("What drives", "The ensemble")):  # counts and names
            continue
        assert re.search(r"\[[^\]]+, [^\]]+\]", item), item


def test_pdf_is_a_pdf_with_every_section(out):
    data = (out / "report" / "report.pdf").read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert b"CreationDate" not in data  # no wall-clock timestamp
    doc = content.build(inputs.load(out))
    titles = list(content.SECTION_TITLES)
    cut = [anchor for anchor, _, _ in content.SECTIONS].index(content.OUTLINE_AFTER) + 1
    assert pdf.headings(doc) == [*titles[:cut], "Contents", *titles[cut:]]


def test_report_is_byte_deterministic(out, tmp_path):
    shutil.copytree(out / "analysis", tmp_path / "analysis")
    assert report_cli.main(["--out", str(tmp_path)]) == 0
    for name in ("report.html", "report.pdf"):
        assert (out / "report" / name).read_bytes() == (tmp_path / "report" / name).read_bytes(), name


def test_small_sweep_report_says_what_it_could_not_draw(tmp_path):
    make_sweep(tmp_path, name="small", grid="small", replicates=4, ablations=False)
    assert analyze_cli.main(["--sweep", "small", "--out", str(tmp_path)]) == 0
    assert report_cli.main(["--out", str(tmp_path)]) == 0
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "is not drawn: no workload varies two crossover knobs" in html
    assert "cannot be attributed" in html
    assert (tmp_path / "report" / "report.pdf").read_bytes().startswith(b"%PDF-")


def test_report_without_analysis_is_a_one_line_error(tmp_path, capsys):
    assert report_cli.main(["--out", str(tmp_path)]) == 2
    assert "python -m study analyze" in capsys.readouterr().err


def test_number_formats():
    assert numbers.cycles(4655.4, 4600.2, 4700.9) == "4655 [4600, 4701]"
    assert numbers.ratio(1.4341, 1.4333, 1.4352) == "1.434\u00d7 [1.433, 1.435]"
    assert numbers.percent(-0.4417, -0.4434, -0.4403) == "\u221244.2% [\u221244.3%, \u221244.0%]"
    assert numbers.percent(0.0086, digits=2, signed=True) == "+0.86%"
    assert numbers.interval(float("nan"), 1.0) == "[CI n/a]"
    assert numbers.num(float("inf")) == "+\u221e"
    assert numbers.pvalue(1e-9) == "<0.0001"
    assert numbers.plain(64.0) == "64" and numbers.plain(0.25) == "0.25"


def test_page_one_opens_with_a_bottom_line_before_the_map_and_the_counts(html):
    verdict = html[html.find("Verdict</h2>"):html.find("Headline numbers</h2>")]
    start = verdict.find("In short: ")
    assert start > 0 and start < verdict.find("<img") < verdict.find("over ")
    text = verdict[start:verdict.find("</p>", start)]
    sentences = re.split(r"(?<=\.)\s+(?=[A-Z])", text.removeprefix("In short: "))
    assert 2 <= len(sentences) <= 5, sentences
    # per kernel, each workload at its most threads; the synthetic machine is a what-if, never "fitted"
    assert "uncalibrated what-if machine" in text and "fitted to" not in text.replace("not fitted to", "")
    for workload in ("mprotect_toggle", "madv_free", "uffd_wp"):
        assert f"for {workload}" in text, workload
    assert "on costs not fitted to the RFC&#x27;s table" in text


def test_every_headline_says_why_from_the_engines_counts(html):
    section = html[html.find("Headline numbers</h2>"):html.find("The question and the model</h2>")]
    items = [i for i in re.findall(r"<li>(.*?)</li>", section, flags=re.S) if "most threads" in i]
    assert items and all("Why: relaxed costs" in i for i in items), items


def test_a_speedup_is_printed_to_the_precision_its_intervals_allow():
    from study.report import numbers as fmt

    # the model interval [36, 50] is 14 wide: no decimal; a Monte Carlo CI that would print as
    # [44, 44] says its size instead
    assert fmt.estimate(44.0914, 44.0724, 44.1117, 35.885, 49.754) == "44\u00d7 (Monte Carlo CI \u00b10.05%), model [36, 50]"
    assert fmt.estimate(1.4685, 1.4680, 1.4690, 1.4123, 1.5034) == "1.468\u00d7 [1.468, 1.469], model [1.412, 1.503]"
    assert fmt.estimate(1.2, 1.1, 1.3) == "1.20\u00d7 [1.10, 1.30]"
    assert fmt.speedup(0.903, 0.3316, 1.2418) == "0.90\u00d7"
