"""selection_report on a small hand-made dataset whose numbers are worked out by hand."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset

from hf_selectit import SelectionReport, fuse_models, select_random, select_top, selection_report
from hf_selectit.errors import ConfigError, ScoreColumnError

NAN = float("nan")


def _scored() -> Dataset:
    """14 rows: scores 0..10 (ok), a NaN score with an empty response, two error rows."""
    rows = []
    for s in range(11):
        # input is empty, so X is the instruction alone: len(X) = s + 1.
        rows.append({"instruction": "a" * (s + 1), "input": "", "output": "b" * (2 * s + 2),
                     "selectit_sentence_score": float(s), "selectit_status": "ok",
                     "src": "even" if s % 2 == 0 else "odd"})
    rows.append({"instruction": "a", "input": "", "output": "", "selectit_sentence_score": NAN,
                 "selectit_status": "ok", "src": "odd"})
    for score in (99.0, NAN):
        rows.append({"instruction": "a", "input": "", "output": "bb", "selectit_sentence_score": score,
                     "selectit_status": "error: out of memory", "src": "even"})
    return Dataset.from_list(rows)


def test_report_numbers_by_hand():
    scored = _scored()
    subset = select_top(scored, ratio=0.5)  # int(14 * .5) = 7: scores 10..4
    report = selection_report(scored, subset)
    assert isinstance(report, SelectionReport)
    assert (report.rows_in, report.rows_kept, report.rows_excluded) == (14, 7, 7)
    assert report.excluded == {"error_status": 2, "nan_score": 1, "below_cut": 4}

    # All valid scores 0..10 (numpy linear quantiles): p10 = 1, p25 = 2.5, p50 = 5, ...
    assert report.scores["all"] == pytest.approx(
        {"n": 11, "mean": 5.0, "min": 0.0, "p10": 1.0, "p25": 2.5, "p50": 5.0, "p75": 7.5,
         "p90": 9.0, "max": 10.0})
    # Kept 4..10: p10 = 4 + 0.1 * 6 = 4.6, p25 = 5.5, p50 = 7, p75 = 8.5, p90 = 9.4.
    assert report.scores["kept"] == pytest.approx(
        {"n": 7, "mean": 7.0, "min": 4.0, "p10": 4.6, "p25": 5.5, "p50": 7.0, "p75": 8.5,
         "p90": 9.4, "max": 10.0})

    # Lengths: the empty-response row is unreadable, 13 rows measured. Instructions: sum(1..11)
    # = 66 + 1 + 1 = 68; responses: sum(2..22 step 2) = 132 + 2 + 2 = 136.
    assert report.lengths["all"] == pytest.approx({"instruction": 68 / 13, "response": 136 / 13, "rows": 13})
    # Kept s = 4..10: instructions 5..11 -> 56 / 7 = 8; responses 10..22 -> 112 / 7 = 16.
    assert report.lengths["kept"] == pytest.approx({"instruction": 8.0, "response": 16.0, "rows": 7})
    assert report.by is None and report.groups is None
    assert report.rule["rule"] == "top_ratio" and report.rule["rows_kept"] == 7


def test_report_groups_and_rendering():
    scored = _scored()
    subset = select_top(scored, ratio=0.5, by="src", order="score")
    report = selection_report(scored, subset)  # `by` comes from the recorded rule
    # even: 0,2,...,10 plus two error rows = 8 rows -> 4 kept (10, 8, 6, 4);
    # odd: 1,3,...,9 plus the NaN row = 6 rows -> 3 kept (9, 7, 5).
    assert report.by == "src"
    assert report.groups == [
        {"value": "even", "rows_in": 8, "kept": 4, "share": 0.5},
        {"value": "odd", "rows_in": 6, "kept": 3, "share": 0.5},
    ]
    md = report.to_markdown()
    assert "**Selection:** top 0.5 (50.00%) of rows by `selectit_sentence_score`, within each group of `src`" in md
    assert "score order (best first)" in md
    assert "| Rows | 14 | 7 |" in md
    assert "| Score p50 | 5.0000 | 7.0000 |" in md
    assert "| Mean response length (chars) | 10.5 | 16.0 |" in md
    assert "Excluded: 7 rows (2 with an error status, 1 without a score, 4 below the cut)." in md
    assert "| even | 8 | 4 | 50.0% |" in md
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["groups"][1]["value"] == "odd"


def test_report_on_random_subset_counts_drawn_error_rows():
    scored = _scored()
    subset = select_random(scored, ratio=1.0)
    report = selection_report(scored, subset)
    assert report.excluded == {"error_status": 0, "nan_score": 0, "below_cut": 0}
    assert report.scores["kept"]["n"] == 11
    assert "random 100.00% of rows (seed 0)" in report.to_markdown()


def test_report_without_text_columns_and_on_fused_column():
    scored = Dataset.from_dict({"m1_sentence_score": [1.0, 2.0, 3.0, 4.0],
                                "m2_sentence_score": [4.0, 3.0, 2.0, 1.0]})
    scored = fuse_models(scored, columns=["m1_sentence_score", "m2_sentence_score"], weights=[0.75, 0.25])
    subset = select_top(scored, k=2, column="selectit_model_score")
    report = selection_report(scored, subset)  # column comes from the recorded rule
    assert report.column == "selectit_model_score"
    assert report.scores["kept"]["min"] == pytest.approx(0.75 * 3 + 0.25 * 2)
    assert report.lengths is None and "no instruction/response columns" in report.lengths_note
    assert "Mean instruction length" not in report.to_markdown()


def test_report_rejects_mismatched_datasets():
    scored = _scored()
    subset = select_top(scored, ratio=0.5)
    with pytest.raises(ConfigError, match="selected from 14 rows but `scored` has 13"):
        selection_report(scored.select(range(13)), subset)
    with pytest.raises(ConfigError, match="more than the scored dataset"):
        selection_report(subset, scored)
    with pytest.raises(ScoreColumnError, match="'nope' not found"):
        selection_report(scored, subset, column="nope")
    with pytest.raises(ConfigError, match="by='nope' is not a column"):
        selection_report(scored, subset, by="nope")


def test_report_length_correlation_and_baseline_overlaps_by_hand():
    scored = _scored()
    subset = select_top(scored, ratio=0.5)  # 7 rows: scores 10..4 = indices 10..4
    report = selection_report(scored, subset, n_boot=200, seed=0)
    # Scores 0..10 with response lengths 2s + 2: a perfect rank correlation over the 11 rows
    # that have both (the NaN-score row and the two error rows are left out).
    corr = report.length_correlation
    assert corr["value"] == pytest.approx(1.0) and corr["n"] == 11
    assert corr["ci_low"] <= 1.0 <= corr["ci_high"]
    b = report.baselines
    assert b["size"] == 7 and b["rows_in"] == 14
    # The 7 longest responses are the same rows 4..10: overlap complete.
    assert (b["length"]["both"], b["length"]["share"], b["length"]["jaccard"]) == (7, 1.0, 1.0)
    # Random: 7 of 14 rows drawn with numpy's default_rng(0).
    import numpy as np

    drawn = set(np.random.default_rng(0).choice(14, size=7, replace=False).tolist())
    both = len(drawn & set(range(4, 11)))
    assert b["random"]["both"] == both and b["random"]["share"] == pytest.approx(both / 7)
    assert b["random"]["jaccard"] == pytest.approx(both / (14 - both))
    assert b["random"]["expected_share"] == pytest.approx(0.5) and b["random"]["seed"] == 0
    md = report.to_markdown()
    assert "Score vs response length (characters): Spearman 1.000" in md
    assert "| longest responses (length only) | 7 | 100.0% |" in md
    json.dumps(report.to_dict())


def test_report_baselines_need_a_recorded_rule():
    scored = _scored()
    report = selection_report(scored, scored.select(range(3)))
    assert report.baselines is None and "recorded selection rule" in report.baselines_note
    # A random subset is located again from its recorded seed.
    report = selection_report(scored, select_random(scored, k=5, seed=3))
    assert report.baselines["size"] == 5
