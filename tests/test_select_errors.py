"""User errors of the selection step: bad seeds, list-valued `by`, default score column, null scores."""

from __future__ import annotations

import json
import logging

import pytest
from datasets import Dataset, load_dataset

from hf_selectit import select_random, select_top
from hf_selectit.errors import ConfigError, ScoreColumnError
from hf_selectit.report import selection_report
from hf_selectit.methods.columns import resolve as resolve_score_column


def _scored(prefix="selectit_", n=10):
    return Dataset.from_dict({
        "instruction": [f"q{i}" for i in range(n)],
        f"{prefix}sentence_score": [float(i % 4) for i in range(n)],
        f"{prefix}status": ["ok"] * n,
        "tags": [["a", "b"] if i % 2 else ["c"] for i in range(n)],
        "meta": [{"src": "x"} for _ in range(n)],
    })


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True, None])
def test_bad_seed_is_a_config_error(seed):
    with pytest.raises(ConfigError, match=r"seed=.* expected a whole number >= 0.*--seed 0"):
        select_random(_scored(), ratio=0.5, seed=seed)


def test_seed_zero_and_large_seeds_work():
    assert len(select_random(_scored(), ratio=0.5, seed=0)) == 5
    assert len(select_random(_scored(), k=3, seed=2**40)) == 3


@pytest.mark.parametrize("column", ["tags", "meta"])
def test_by_a_list_or_struct_column_names_the_fix(column):
    with pytest.raises(ConfigError, match=rf"by='{column}' cannot group rows.*one string, number or bool per row"):
        select_top(_scored(), ratio=0.5, by=column)


def test_by_must_be_one_column_name():
    with pytest.raises(ConfigError, match="name of one column"):
        select_top(_scored(), ratio=0.5, by=["instruction"])


def test_single_prefixed_score_column_is_picked():
    ds = _scored(prefix="selectit_7b_")
    assert resolve_score_column(ds) == "selectit_7b_sentence_score"
    subset = select_top(ds, ratio=0.2)                    # the default column name is absent
    assert subset["selectit_7b_sentence_score"] == [3.0, 3.0]
    report = selection_report(ds, subset)
    assert report.column == "selectit_7b_sentence_score" and report.rows_kept == 2
    # The CLI passes the default name explicitly: same outcome.
    assert len(select_top(ds, ratio=0.2, column="selectit_sentence_score")) == 2


def test_several_score_columns_are_listed():
    ds = _scored(prefix="selectit_7b_").add_column("selectit_13b_sentence_score", [1.0] * 10)
    with pytest.raises(ScoreColumnError) as err:
        select_top(ds, ratio=0.2)
    message = str(err.value)
    assert "['selectit_7b_sentence_score', 'selectit_13b_sentence_score']" in message
    assert "--column NAME" in message
    with pytest.raises(ScoreColumnError, match="no other numeric column ending in 'score'"):
        select_top(Dataset.from_dict({"text": ["a"]}))


def test_all_failed_rows_saved_as_jsonl_select_nothing(tmp_path, caplog):
    # What the scorer writes when every row fails: NaN scores, error statuses. JSON stores NaN as
    # null, so the column comes back with dtype "null".
    n = 6
    path = tmp_path / "scored.jsonl"
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"instruction": f"q{i}", "selectit_sentence_score": None,
                                "selectit_token_scores": None,
                                "selectit_status": "error: empty instruction"}) + "\n")
    ds = load_dataset("json", data_files=str(path), split="train")
    assert ds.features["selectit_sentence_score"].dtype == "null"
    with caplog.at_level(logging.WARNING, logger="hf_selectit"):
        subset = select_top(ds, ratio=0.5)
    assert len(subset) == 0
    assert "every row failed to score" in caplog.text and "selectit_status" in caplog.text
    report = selection_report(ds, subset)
    assert report.excluded["error_status"] == n

    # The same without a status column: null scores are NaN rows.
    bare = ds.remove_columns(["selectit_status"])
    assert len(select_top(bare, k=2)) == 0


def test_single_ifd_column_gets_its_cut_off_when_picked_by_default():
    ds = Dataset.from_dict({"ifd_score": [0.5, 0.9, 1.2, 1.5, 0.7], "ifd_status": ["ok"] * 5})
    subset = select_top(ds, k=2)                          # column resolved to ifd_score
    assert subset["ifd_score"] == [0.9, 0.7]              # rows above 1 dropped first (Cherry)
