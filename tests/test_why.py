"""Why a setting comes out as it does (study/analysis/why.py): the part of the cycles that moved,
the counter behind it, and the patch that drives it, read from the engine's own books."""

from __future__ import annotations

import pandas as pd

from study.analysis import schema, why

PARTS = ("total", "initiator", "initiator_refill", "other", "other_refill", "stolen")


def _cell(pair, role, threads, counts, **cycles):
    row = {"pair_id": pair, "role": role, "machine_label": "m, kernel k", "workload": "w",
           "workload.threads": threads, "workload.pages": 1}
    for part in PARTS:
        row[f"{part}_cycles_per_round.mean"] = float(cycles.get(part, 0.0))
    for name, value in counts.items():
        row[f"count.{name}"] = float(value)
    return row


def _cells():
    zero = dict(remote_full=0, ws_refills=0, ipis=2, local_partial=1, invlpg=1)
    return pd.DataFrame([
        # p48: relaxed loses, its other threads refill after 47 full flushes of their CPUs
        _cell("p48", schema.ROLE_STRICT, 48, zero, total=1000, initiator=600, other=100, stolen=300),
        _cell("p48", schema.ROLE_RELAXED, 48, dict(zero, remote_full=47, ws_refills=47, ipis=1),
              total=1500, initiator=500, other=900, other_refill=800, stolen=100),
        # p16: the same setting at 16 threads, where the sweep switched each patch off
        _cell("p16", schema.ROLE_STRICT, 16, zero, total=800, initiator=600, stolen=200),
        _cell("p16", schema.ROLE_RELAXED, 16, dict(zero, remote_full=15), total=900, initiator=500, other=300,
              other_refill=300, stolen=100),
        # p2: relaxed wins by sending fewer IPIs
        _cell("p2", schema.ROLE_STRICT, 2, dict(zero, ipis=2), total=900, initiator=500, stolen=400),
        _cell("p2", schema.ROLE_RELAXED, 2, dict(zero, ipis=1), total=600, initiator=400, stolen=200),
    ])


ATTRIBUTION = pd.DataFrame([
    dict(pair_id="p16", idea="relaxed_flush_on_upgrade", acts=True, contribution=-90.0),
    dict(pair_id="p16", idea="clean_anon_writable", acts=True, contribution=-5.0),
    dict(pair_id="p16", idea="fix_spurious_fault", acts=False, contribution=0.0),
    dict(pair_id="p2", idea="relaxed_flush_on_upgrade", acts=True, contribution=250.0),
])


def test_a_loss_is_named_by_the_part_that_grew_and_its_counter():
    found = why.explain(_cells(), "p16", ATTRIBUTION)
    assert found["part"] == "other_refill" and found["part_change"] == 300
    assert found["counter"] == "remote_full" and (found["counter_strict"], found["counter_relaxed"]) == (0, 15)
    assert found["patch"] == "relaxed_flush_on_upgrade" and found["patch_at"] is None
    assert found["text"].startswith("relaxed costs 100 cycles per round more, most of it in the other threads' "
                                    "refills of their hot sets (+300): `remote_full` 0 \u2192 15")


def test_without_an_ablation_the_patch_comes_from_the_nearest_thread_count():
    found = why.explain(_cells(), "p48", ATTRIBUTION)
    assert found["part"] == "other_refill" and found["counter"] in ("remote_full", "ws_refills")
    assert (found["patch"], found["patch_at"]) == ("relaxed_flush_on_upgrade", 16)
    assert "at 16 threads" in found["text"]


def test_a_win_is_named_by_the_part_that_shrank():
    found = why.explain(_cells(), "p2", ATTRIBUTION)
    assert found["total_change"] == -300 and found["part"] == "stolen" and found["part_change"] == -200
    assert found["counter"] == "ipis" and "less" in found["text"]
    assert found["patch"] == "relaxed_flush_on_upgrade"


def test_the_table_has_a_row_per_setting():
    main = pd.DataFrame({"pair_id": ["p48", "p16", "p2", "p2"]})
    table = why.table(_cells(), main, ATTRIBUTION)
    assert list(table["pair_id"]) == ["p48", "p16", "p2"] and table["text"].str.startswith("relaxed costs").all()
    assert why.explain(_cells(), "nonesuch", ATTRIBUTION) is None
