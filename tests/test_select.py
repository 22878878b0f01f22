"""select_top / select_random / fuse_models on small hand-made score columns."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from datasets import Dataset

from hf_selectit import fuse_models, select_random, select_top
from hf_selectit.errors import ConfigError, ScoreColumnError
from hf_selectit.methods.columns import columns_of
from hf_selectit.provenance import attach_scorer_info
from hf_selectit.provenance import read as read_metadata
from hf_selectit.select import selection_rule

NAN = float("nan")
COL = "selectit_sentence_score"

# Many ties: three 3s, five 2s... hand-ranked below.
TIES = [2.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 2.0]
# (score, index) descending: the 3s (6, 3), the 2s (9, 8, 5, 2, 0), the 1s (7, 4, 1).
TIES_RANKING = [6, 3, 9, 8, 5, 2, 0, 7, 4, 1]


def _ds(scores, status=None, **extra):
    data = {"id": list(range(len(scores))), COL: list(scores), **extra}
    if status is not None:
        data["selectit_status"] = list(status)
    return Dataset.from_dict(data)


def _reference(scores, n_keep):
    """The authors' rule written the obvious way: sorted((score, index), reverse=True)."""
    valid = [i for i, s in enumerate(scores) if s is not None and not math.isnan(s)]
    return sorted(valid, key=lambda i: (scores[i], i), reverse=True)[:n_keep]


def test_tie_rule_hand_written_expectation():
    ds = _ds(TIES)
    assert select_top(ds, ratio=1.0, order="score")["id"] == TIES_RANKING
    assert select_top(ds, ratio=0.5, order="score")["id"] == [6, 3, 9, 8, 5]
    assert select_top(ds, ratio=0.5)["id"] == [3, 5, 6, 8, 9]
    assert select_top(ds, k=7, order="score")["id"] == [6, 3, 9, 8, 5, 2, 0]
    # int(10 * 0.35) = 3: the tie among the 2s is cut at the highest index, 9.
    assert select_top(ds, ratio=0.35, order="score")["id"] == [6, 3, 9]


def test_tie_rule_matches_reference_on_many_ties():
    rng = np.random.default_rng(1)
    scores = np.round(rng.uniform(0, 5, 2003), 1).tolist()  # ~50 distinct values: ties everywhere
    ds = _ds(scores)
    for ratio in (0.2, 0.37, 1.0):
        n_keep = int(len(scores) * ratio)
        expected = _reference(scores, n_keep)
        assert select_top(ds, ratio=ratio, order="score")["id"] == expected
        assert select_top(ds, ratio=ratio)["id"] == sorted(expected)


def test_kept_rows_are_the_scored_rows_unchanged():
    ds = _ds(TIES, text=[f"row {i}" for i in range(10)])
    subset = select_top(ds, ratio=0.5, order="score")
    for row in subset:
        assert row == ds[row["id"]]


def test_original_index_is_the_position_in_the_given_dataset():
    # A shuffled dataset (indices mapping): ties go to the higher position in it, not in the file.
    ds = _ds(TIES).shuffle(seed=3)
    ids = ds["id"]
    positions = _reference([TIES[i] for i in ids], 4)
    assert select_top(ds, k=4, order="score")["id"] == [ids[p] for p in positions]


def test_quota_counts_all_rows_but_never_selects_error_or_nan_rows(caplog):
    scores = [5.0, 9.0, NAN, 4.0, 3.0, None, 2.0, 1.0, 8.0, 0.5]
    status = ["ok", "error: out of memory", "ok", "truncated", "ok", "ok", "ok", "ok", "error: x", "ok"]
    ds = _ds(scores, status)
    with caplog.at_level(logging.WARNING, logger="hf_selectit.select"):
        subset = select_top(ds, ratio=0.5, order="score")
    # N = 10 -> 5 rows; rows 1 and 8 have the top scores but an error status; 2 and 5 have none.
    assert subset["id"] == [0, 3, 4, 6, 7]
    rule = selection_rule(subset)
    assert (rule["rows_in"], rule["rows_kept"], rule["rows_error"], rule["rows_nan"], rule["rows_valid"]) == (
        10, 5, 2, 2, 6)
    assert rule["status_column"] == "selectit_status"
    assert "2 with an error status" in caplog.text and "2 with a NaN/null score" in caplog.text
    # Even with everything allowed, they stay out.
    assert select_top(ds, ratio=1.0)["id"] == [0, 3, 4, 6, 7, 9]
    assert select_top(ds, threshold=-1e9)["id"] == [0, 3, 4, 6, 7, 9]


def test_fewer_valid_rows_than_quota_keeps_all_valid_and_warns(caplog):
    ds = _ds([1.0, NAN, NAN, 2.0, NAN, NAN, NAN, NAN, NAN, NAN])
    with caplog.at_level(logging.WARNING, logger="hf_selectit.select"):
        subset = select_top(ds, ratio=0.5)
    assert subset["id"] == [0, 3]
    assert "Fewer valid rows than the quota" in caplog.text


def test_quota_is_int_n_times_ratio():
    ds = _ds([float(i) for i in range(52)])
    for ratio in (0.2, 0.29, 0.3, 0.7, 0.99):
        assert len(select_top(ds, ratio=ratio)) == int(52 * ratio)


def test_order_honoured():
    ds = _ds(TIES)
    assert select_top(ds, k=5, order="original")["id"] == sorted(TIES_RANKING[:5])
    assert select_top(ds, k=5, order="score")["id"] == TIES_RANKING[:5]
    assert selection_rule(select_top(ds, k=5, order="score"))["order"] == "score"


def test_threshold_keeps_scores_at_or_above():
    ds = _ds(TIES)
    assert select_top(ds, threshold=2.0, order="score")["id"] == [6, 3, 9, 8, 5, 2, 0]
    assert select_top(ds, threshold=2.5)["id"] == [3, 6]
    rule = selection_rule(select_top(ds, threshold=2.5))
    assert (rule["rule"], rule["threshold"], rule["ratio"], rule["k"]) == ("threshold", 2.5, None, None)


def test_group_selection_quota_per_group():
    groups = ["a", "a", "b", "b", "a", "a", "b", "b", "a", "b"]
    scores = [1.0, 2.0, 9.0, NAN, 3.0, 2.0, 8.0, 7.0, 0.5, 8.0]
    ds = _ds(scores, src=groups)
    subset = select_top(ds, ratio=0.5, by="src", order="score")
    # a: rows 0,1,4,5,8 -> int(5 * .5) = 2: 4 (3.0), then the tie 1/5 (2.0) goes to 5.
    # b: rows 2,3,6,7,9 -> 2: 2 (9.0), then the tie 6/9 (8.0) goes to 9. One global score order.
    assert subset["id"] == [2, 9, 4, 5]
    assert select_top(ds, ratio=0.5, by="src")["id"] == [2, 4, 5, 9]
    rule = selection_rule(subset)
    assert rule["by"] == "src"
    assert rule["groups"] == [
        {"value": "a", "rows_in": 5, "kept": 2, "rows_error": 0, "rows_nan": 0},
        {"value": "b", "rows_in": 5, "kept": 2, "rows_error": 0, "rows_nan": 1},
    ]
    # Without groups the same quota goes to group b's rows.
    assert select_top(ds, k=4, order="score")["id"] == [2, 9, 6, 7]
    assert select_top(ds, k=1, by="src")["id"] == [2, 4]


def test_group_with_null_values_is_its_own_group():
    ds = _ds([1.0, 2.0, 3.0, 4.0], src=["a", None, None, "a"])
    assert select_top(ds, k=1, by="src")["id"] == [2, 3]


def test_default_ratio_gives_way_to_k_or_threshold():
    ds = _ds(TIES)
    assert len(select_top(ds, k=3)) == 3
    assert len(select_top(ds, ratio=0.2, k=3)) == 3  # 0.2 is the default
    assert len(select_top(ds, ratio=None, threshold=3.0)) == 2
    assert len(select_top(ds)) == 2


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"ratio": 0}, "ratio=0 is invalid"),
        ({"ratio": 1.5}, "ratio=1.5 is invalid"),
        ({"ratio": -0.1}, "(0, 1]"),
        ({"ratio": True}, "ratio=True"),
        ({"k": 0}, "k=0 is invalid"),
        ({"k": 11}, "larger than the dataset (10 rows)"),
        ({"k": 2.5}, "k=2.5"),
        ({"ratio": 0.5, "k": 3}, "give exactly one of ratio, k or threshold"),
        ({"k": 3, "threshold": 1.0}, "give exactly one"),
        ({"ratio": None}, "all were None"),
        ({"threshold": NAN}, "finite number"),
        ({"order": "desc"}, "order='desc' is invalid"),
        ({"by": "nope"}, "by='nope' is not a column"),
    ],
)
def test_bad_arguments(kwargs, fragment):
    with pytest.raises(ConfigError) as err:
        select_top(_ds(TIES), **kwargs)
    assert fragment in str(err.value)


def test_missing_score_column_lists_score_like_columns():
    ds = Dataset.from_dict({"m1_sentence_score": [1.0], "m2_model_score": [2.0], "text": ["x"]})
    with pytest.raises(ScoreColumnError) as err:
        select_top(ds)
    message = str(err.value)
    assert "'selectit_sentence_score' not found" in message
    assert "['m1_sentence_score', 'm2_model_score']" in message
    with pytest.raises(ScoreColumnError, match="expected one number per row"):
        select_top(ds, column="text")


def test_unselected_dataset_has_no_rule():
    assert selection_rule(_ds(TIES)) is None


def test_reselection_replaces_the_rule():
    ds = _ds(TIES, src=["a", "b"] * 5)
    first = select_top(ds, ratio=1.0, by="src")
    second = select_top(first, k=2)
    rule = selection_rule(second)
    assert (rule["rule"], rule["by"], rule["groups"], rule["ratio"]) == ("top_k", None, None, None)


def test_select_random_baseline():
    ds = _ds([NAN] * 50)
    a = select_random(ds, k=10, seed=7)
    assert a["id"] == select_random(ds, k=10, seed=7)["id"]
    assert a["id"] != select_random(ds, k=10, seed=8)["id"]
    assert a["id"] == sorted(a["id"]) and len(set(a["id"])) == 10
    assert len(select_random(ds)) == 10  # default ratio 0.2
    assert len(select_random(ds, ratio=0.5)) == 25
    rule = selection_rule(a)
    assert (rule["method"], rule["rule"], rule["k"], rule["seed"]) == ("random", "random_k", 10, 7)
    with pytest.raises(ConfigError, match="give one of them"):
        select_random(ds, ratio=0.1, k=3)
    with pytest.raises(ConfigError, match="larger than the dataset"):
        select_random(ds, k=51)


# --- fusion -----------------------------------------------------------------------------------


def _models():
    return Dataset.from_dict({
        "id": [0, 1, 2, 3],
        "m7_sentence_score": [1.0, 2.0, NAN, 4.0],
        "m7_status": ["ok", "ok", "ok", "truncated"],
        "m13_sentence_score": [3.0, 0.0, 1.0, 2.0],
        "m13_status": ["ok", "error: out of memory", "ok", "ok"],
        "m70_sentence_score": [2.0, 4.0, 3.0, 1.0],
        "m70_status": ["ok", "ok", "ok", "ok"],
    })


def test_fuse_paper_weights_hand_computed():
    ds = fuse_models(_models(), columns=["m7_sentence_score", "m13_sentence_score"], params=[1e9, 3e9])
    fused = ds["selectit_model_score"]
    # weights 1/4, 3/4: 0.25*1 + 0.75*3 = 2.5; 0.25*2 + 0 = 0.5; NaN; 0.25*4 + 0.75*2 = 2.5
    assert fused[0] == pytest.approx(2.5) and fused[1] == pytest.approx(0.5)
    assert math.isnan(fused[2]) and fused[3] == pytest.approx(2.5)
    assert ds["selectit_model_status"] == [
        "ok", "error: m13_sentence_score: out of memory", "error: no score in m7_sentence_score", "truncated"]
    fusion = read_metadata(ds)["fusion"]["selectit_model_score"]
    assert fusion["weights"] == pytest.approx([0.25, 0.75]) and fusion["scheme"] == "paper"
    # The fused status keeps errors and NaN rows out of the selection.
    assert select_top(ds, ratio=1.0, column="selectit_model_score", order="score")["id"] == [3, 0]


def test_fuse_three_models_paper_vs_selectit_repo():
    cols = ["m7_sentence_score", "m13_sentence_score", "m70_sentence_score"]
    paper = fuse_models(_models(), columns=cols, params=[7e9, 13e9, 70e9])["selectit_model_score"]
    assert paper[0] == pytest.approx((7 * 1.0 + 13 * 3.0 + 70 * 2.0) / 90)
    assert paper[3] == pytest.approx((7 * 4.0 + 13 * 2.0 + 70 * 1.0) / 90)
    repo = fuse_models(_models(), columns=cols, weights="selectit-repo")["selectit_model_score"]
    assert repo[0] == pytest.approx(7 / 20 * 1.0 + 13 / 20 * 3.0 + 70 / 90 * 2.0)
    explicit = fuse_models(_models(), columns=cols, weights=[1.0, 0.0, 0.5], output="mix_score")
    assert explicit["mix_score"][3] == pytest.approx(4.0 + 0.5)
    assert "mix_status" in explicit.column_names


def test_fuse_reads_recorded_parameter_counts():
    ds = _models()
    ds = attach_scorer_info(ds, {"column_prefix": "m7_", "parameter_count": 7e9})
    ds = attach_scorer_info(ds, {"column_prefix": "m13_", "parameter_count": 13e9})
    fused = fuse_models(ds, columns=["m7_sentence_score", "m13_sentence_score"])
    assert fused["selectit_model_score"][0] == pytest.approx((7 * 1.0 + 13 * 3.0) / 20)
    with pytest.raises(ConfigError, match=r"No parameter count recorded for \['m70_sentence_score'\]"):
        fuse_models(ds, columns=["m7_sentence_score", "m70_sentence_score"])


def test_fuse_columns_from_a_separate_dataset():
    ds = _models()
    other = Dataset.from_dict({"selectit_sentence_score": [5.0, 5.0, 5.0, NAN],
                               "selectit_status": ["ok", "ok", "error: bad row", "ok"]})
    fused = fuse_models(ds, columns=["m70_sentence_score", (other, "selectit_sentence_score")],
                        params=[1, 1])
    assert fused["selectit_model_score"][:2] == pytest.approx([3.5, 4.5])
    assert fused["selectit_model_status"][2] == "error: selectit_sentence_score@columns[1]: bad row"
    with pytest.raises(ConfigError, match="has 3 rows, expected 4"):
        fuse_models(ds, columns=["m7_sentence_score", (other.select(range(3)), "selectit_sentence_score")],
                    params=[1, 1])


def test_fuse_refuses_fused_output_replacement_of_inputs_and_replaces_old_output():
    ds = fuse_models(_models(), columns=["m7_sentence_score", "m70_sentence_score"], weights=[1, 0])
    again = fuse_models(ds, columns=["m7_sentence_score", "m70_sentence_score"], weights=[0, 1])
    # NaN in any model gives NaN, even with weight 0 (row 2 has no m7 score).
    fused = again["selectit_model_score"]
    assert fused[:2] + fused[3:] == [2.0, 4.0, 1.0] and math.isnan(fused[2])
    assert again.column_names.count("selectit_model_score") == 1
    with pytest.raises(ConfigError, match="is one of the input columns"):
        fuse_models(ds, columns=["m7_sentence_score", "selectit_model_score"], weights=[1, 1])


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"columns": ["m7_sentence_score", "m13_sentence_score"], "params": [7e9, -1]}, ConfigError, "must be > 0"),
        ({"columns": ["m7_sentence_score", "m13_sentence_score"], "params": [7e9, 0]}, ConfigError, "must be > 0"),
        ({"columns": ["m7_sentence_score"], "params": [1, 2]}, ConfigError, "2 entries for 1"),
        ({"columns": ["m7_sentence_score", "m13_sentence_score"], "params": [1, 2], "weights": [1, 1]},
         ConfigError, "exactly one of params"),
        ({"columns": ["m7_sentence_score", "m13_sentence_score"], "weights": "selectit-repo"},
         ConfigError, "exactly 3 score columns"),
        ({"columns": "m7_sentence_score", "params": [1]}, ConfigError, "non-empty list"),
        ({"columns": [], "params": []}, ConfigError, "non-empty list"),
        ({"columns": ["m7_sentence_score", "m99_sentence_score"], "params": [1, 1]}, ScoreColumnError,
         "'m99_sentence_score' not found"),
    ],
)
def test_fuse_bad_arguments(kwargs, error, fragment):
    with pytest.raises(error) as err:
        fuse_models(_models(), **kwargs)
    assert fragment in str(err.value)


def test_status_column_names():
    assert columns_of(None, "selectit_sentence_score").status == "selectit_status"
    assert columns_of(None, "selectit_m2_sentence_score").status == "selectit_m2_status"
    assert columns_of(None, "selectit_model_score").status == "selectit_model_status"
