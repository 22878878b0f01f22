"""The column schema (hf_selectit/methods/columns.py): each method's columns, its status, and which
end of each score is better, checked against each paper's own selection rule; and every step that
ranks (select_top, fuse_models, validate, the report, a run) ranks in that direction."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset

from hf_selectit import fuse_models, select_top, selection_report, validate
from hf_selectit.errors import ConfigError
from hf_selectit.methods import columns
from hf_selectit.methods import scorer_class
from hf_selectit.provenance import attach_scorer_info

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Ten rows whose score is the row's position / 4: 0.0, 0.25, ..., 2.25 (four of them above 1).
VALUES = [i / 4 for i in range(10)]


def _scored(method: str, prefix: str, suffix: str = "score", values=VALUES, **recorded) -> Dataset:
    """Hand-made scores in `prefix + suffix` with the scorer's provenance recorded (its method)."""
    ds = Dataset.from_dict({"id": list(range(len(values))), prefix + suffix: list(values),
                            prefix + "status": ["ok"] * len(values)})
    return attach_scorer_info(ds, {"column_prefix": prefix, "method": method, **recorded})


def test_status_strings_are_built_and_read_in_one_place():
    assert columns.row_status(None) == "ok"
    assert columns.row_status(None, truncated=True) == "truncated"
    assert columns.row_status("out of memory") == "error: out of memory"
    # An already-built error status stays as it is (a row fails once).
    assert columns.row_status("error: empty instruction", truncated=True) == "error: empty instruction"
    assert columns.is_error("error: x") and not columns.is_error("truncated") and not columns.is_error(None)
    assert columns.error_reason("error: out of memory") == "out of memory"


@pytest.mark.parametrize("method", ["selectit", "ifd", "rifd", "alpagasus", "deita"])
def test_every_scorer_writes_the_columns_its_schema_declares(method):
    cls = scorer_class(method)
    scorer = cls.from_config(cls.config_class(column_prefix="m1_"))
    cols = scorer.columns
    assert cols.method == method and cols.prefix == "m1_"
    assert scorer.output_columns == cols.columns and cols.status == "m1_status"
    assert cols.score in cols.columns and cols.score_columns[0] == cols.score


def test_each_method_declares_the_end_its_paper_keeps():
    # SelectIT (docs/method.md 5): sort by score descending, keep the first int(N * ratio).
    assert columns.SCHEMAS["selectit"].higher_is_better("selectit_sentence_score") is True
    # Cherry data_by_IFD.py / Superfiltering: drop IFD > 1, then the top rows by IFD descending.
    ifd = columns.SCHEMAS["ifd"]
    assert ifd.higher_is_better("ifd_score") is True and ifd.cutoff == "ifd"
    # Selective Reflection-Tuning (7.2): a LOW r-IFD means the response fits its instruction.
    assert columns.SCHEMAS["rifd"].higher_is_better("rifd_score") is False
    # s(Y|X), s(Y): mean token losses, lower is better.
    for method in ("ifd", "rifd"):
        schema = columns.SCHEMAS[method]
        assert not schema.higher_is_better(schema.prefix + "conditioned_loss")
        assert not schema.higher_is_better(schema.prefix + "direct_loss")
    # AlpaGasus keeps rows rated >= 4.5; DEITA keeps the top rows by complexity x quality.
    assert columns.SCHEMAS["alpagasus"].higher_is_better("alpagasus_score") is True
    deita = columns.deita_columns("deita_", "both")
    assert all(deita.higher_is_better(c) for c in deita.score_columns)
    assert columns.deita_columns("q_", "quality").score == "q_quality"


def test_select_top_keeps_each_papers_end():
    # SelectIT: the three best of ten are the highest scores.
    ds = _scored("selectit", "selectit_", "sentence_score")
    assert select_top(ds, ratio=0.3, order="score")["id"] == [9, 8, 7]
    # IFD (Cherry): rows 5..9 (IFD > 1) dropped first; then the highest IFD of the rest.
    ds = _scored("ifd", "ifd_")
    assert select_top(ds, ratio=0.4, order="score")["id"] == [4, 3]
    # r-IFD (Reflection-Tuning): the lowest r-IFD first, after the same cut-off at 1.
    ds = _scored("rifd", "rifd_")
    subset = select_top(ds, ratio=0.4, order="score")
    assert subset["id"] == [0, 1]
    rule = subset.selection.rule
    assert rule["higher_is_better"] is False and rule["cutoff"] == "ifd"
    # A threshold keeps the better side of it.
    assert select_top(ds, threshold=0.5, order="score")["id"] == [0, 1, 2]
    # AlpaGasus: rows rated >= 4.5.
    ds = _scored("alpagasus", "alpagasus_", values=[4.0, 4.6, 5.0, 3.0])
    assert select_top(ds, threshold=4.5)["id"] == [1, 2]


def test_the_direction_comes_from_the_scorer_not_the_column_name():
    # A custom prefix: nothing in "r1_score" says r-IFD; the recorded method does.
    ds = _scored("rifd", "r1_")
    assert select_top(ds, k=2, order="score")["id"] == [0, 1]
    # The same name recorded as IFD ranks the other way.
    assert select_top(_scored("ifd", "r1_"), k=2, order="score")["id"] == [4, 3]


def test_an_explicit_direction_overrides_and_is_recorded():
    ds = _scored("rifd", "rifd_")
    subset = select_top(ds, ratio=0.4, order="score", higher_is_better=True)
    assert subset["id"] == [4, 3]
    assert subset.selection.rule["higher_is_better"] is True
    # order keeps its meaning: the output row order, not the direction.
    assert select_top(ds, ratio=0.4)["id"] == [0, 1]
    with pytest.raises(ConfigError, match="higher_is_better='no' is invalid"):
        select_top(ds, ratio=0.4, higher_is_better="no")


def test_select_top_returns_what_it_kept_and_the_report_uses_it():
    ds = _scored("rifd", "rifd_")
    subset = select_top(ds, ratio=0.4, order="score")
    assert subset.selection.indices.tolist() == [0, 1] == subset["id"]
    report = selection_report(ds, subset)
    assert "by `rifd_score` (lower is better)" in report.to_markdown()
    md = selection_report(ds, select_top(ds, threshold=0.5)).to_markdown()
    assert "rows with `rifd_score` <= 0.5" in md


def test_fusion_keeps_the_direction_and_refuses_mixed_ones():
    ds = _scored("rifd", "a_")
    ds = ds.add_column("b_score", [v * 2 for v in VALUES]).add_column("b_status", ["ok"] * 10)
    ds = attach_scorer_info(ds, {"column_prefix": "b_", "method": "rifd"})
    fused = fuse_models(ds, columns=["a_score", "b_score"], weights=[0.5, 0.5], output="ab_score")
    assert select_top(fused, k=2, column="ab_score", order="score", cutoff=None)["id"] == [0, 1]
    ds = ds.add_column("c_sentence_score", VALUES)
    with pytest.raises(ConfigError, match="lower end is better"):
        fuse_models(ds, columns=["a_score", "c_sentence_score"], weights=[0.5, 0.5])


def test_validate_scores_each_column_in_its_own_direction():
    # Good rows have the LOW r-IFD: in r-IFD's own direction the AUC is 1.
    ds = _scored("rifd", "rifd_").add_column("good", [v < 1 for v in VALUES])
    report = validate(ds, label="good", tokenizer=False, n_boot=0)
    row = report.result("rifd_score")
    assert row["value"] == pytest.approx(1.0) and row["higher_is_better"] is False
    assert "`rifd_score` (lower is better)" in report.to_markdown()
    forced = validate(ds, label="good", tokenizer=False, n_boot=0, higher_is_better=True)
    assert forced.result("rifd_score")["value"] == pytest.approx(0.0)


def test_validate_pairs_with_rifd_counts_a_lower_score_as_the_win(tiny_model_dir):
    from hf_selectit import ReverseIFDScorer

    pairs = Dataset.from_dict({
        "prompt": ["What is 2+2?", "Name the capital of France.", "Say hello.", "Spell cat.", "Add 3 and 4."],
        "chosen": ["2+2 is 4.", "Paris.", "Hello!", "C, A, T.", "3 + 4 = 7, so the answer is 7."],
        "rejected": ["5", "The capital of France is London.", "No.", "dog", "12"]})
    scorer = ReverseIFDScorer(model=str(tiny_model_dir))
    own = validate(pairs, scorers=scorer, tokenizer=False, n_boot=0).result("rifd_score")
    raw = validate(pairs, scorers=scorer, tokenizer=False, n_boot=0, higher_is_better=True).result("rifd_score")
    # Ties count 0.5 either way, so the two directions are mirror images.
    assert own["higher_is_better"] is False and raw["higher_is_better"] is True
    assert own["value"] == pytest.approx(1.0 - raw["value"])
    assert (own["wins"], own["losses"]) == (raw["losses"], raw["wins"])


def test_a_run_with_method_rifd_keeps_the_lowest_rifd(tmp_path, tiny_model_dir):
    from hf_selectit.options import load_run_config
    from hf_selectit.pipeline import run_pipeline

    rows = [{"instruction": f"Add {i} and {i + 1}.", "input": "", "output": f"The sum is {2 * i + 1}."}
            for i in range(10)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_run_config({"input": str(data), "models": [{"method": "rifd", "model": str(tiny_model_dir)}],
                           "select": {"ratio": 0.3, "order": "score"}, "work_dir": str(tmp_path / "w")})
    summary, scored, subset = run_pipeline(cfg)
    assert summary.select_column == "rifd_score"
    scores = np.asarray(scored["rifd_score"])
    below = [i for i in np.argsort(scores, kind="stable") if scores[i] <= 1]
    kept = subset.selection.indices.tolist()
    assert kept == below[:len(kept)] and len(kept) >= 1
    assert subset["rifd_score"] == sorted(subset["rifd_score"])
