"""`validate` refuses what it cannot measure, naming the column and the counts; the CLI says the
same, and `--tokenizer none` means "no token-length baseline" there as in Python and YAML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from hf_selectit import cli, validate
from hf_selectit.config import ValidateConfig
from hf_selectit.errors import ConfigError
from hf_selectit.validation import check_measurable, run_validation, score_agreement


def _rows(scores: list, kinds: list) -> Dataset:
    return Dataset.from_dict({"instruction": [f"q{i}" for i in range(len(scores))],
                              "output": ["a" * (i + 1) for i in range(len(scores))],
                              "judge_score": scores, "kind": kinds})


def test_all_nan_scores_are_refused_with_the_counts():
    ds = _rows([float("nan")] * 6, ["good", "bad"] * 3)
    with pytest.raises(ConfigError) as info:
        validate(ds, label="kind", positive="good", tokenizer=False, n_boot=0)
    message = str(info.value)
    assert "'judge_score'" in message and "6 of 6 values are missing" in message


def test_one_class_left_after_nan_removal_is_refused_with_the_counts():
    # Every "bad" row lacks a score: only positives are left to rank.
    ds = _rows([1.0, float("nan"), 2.0, float("nan"), 3.0, float("nan")], ["good", "bad"] * 3)
    with pytest.raises(ConfigError) as info:
        validate(ds, label="kind", positive="good", tokenizer=False, n_boot=0)
    message = str(info.value)
    assert "'judge_score'" in message and "3 row(s) without a score" in message
    assert "only the positive class is left (3 positive, 0 negative of 3 rows)" in message


def test_mismatched_lengths_are_refused_naming_the_columns():
    with pytest.raises(ConfigError, match=r"'s' has 3 values but there are 4 labels"):
        check_measurable("s", [1.0, 2.0, 3.0], [0, 1, 0, 1], binary=True)
    with pytest.raises(ConfigError, match=r"different lengths \{'a': 3, 'b': 2\}"):
        score_agreement({"a": np.array([1.0, 2.0, 3.0]), "b": np.array([1.0, 2.0])}, n_boot=0)


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_cli_all_null_score_column_says_so(tmp_path, capsys):
    rows = [{"instruction": f"q{i}", "output": "a", "selectit_sentence_score": None,
             "kind": "good" if i % 2 else "bad"} for i in range(6)]
    code = cli.main(["validate", _jsonl(tmp_path / "d.jsonl", rows), "--label", "kind",
                     "--positive", "good", "--tokenizer", "none", "--n-boot", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "'selectit_sentence_score' is all 6 values null" in err and "Two scorers" not in err


def test_cli_tokenizer_none_leaves_the_token_baseline_out(tmp_path, capsys):
    rows = [{"instruction": f"q{i}", "output": "a" * (i + 1), "judge_score": float(i),
             "kind": "good" if i >= 3 else "bad"} for i in range(6)]
    out = tmp_path / "r.json"
    assert cli.main(["validate", _jsonl(tmp_path / "d.jsonl", rows), "--label", "kind", "--positive",
                     "good", "--tokenizer", "none", "--n-boot", "0", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["tokenizer"] is None
    assert "length_tokens" not in {r["name"] for r in report["results"]}
    assert any("token-length baseline was left out" in n for n in report["notes"])
    # The same from a YAML value and from Python's default spelling.
    for value in ("none", None):
        again = run_validation(_rows([float(i) for i in range(6)], ["bad"] * 3 + ["good"] * 3),
                               ValidateConfig(label="kind", positive="good", tokenizer=value, n_boot=0))
        assert again.settings["tokenizer"] is None
