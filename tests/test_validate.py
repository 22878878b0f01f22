"""hf_selectit.validate end to end on the tiny model: pair layouts, labels, baselines, plot."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
from datasets import Dataset, load_dataset

from hf_selectit import SelectITScorer, ValidationReport, validate
from hf_selectit.errors import ConfigError, SchemaError
from hf_selectit.metrics import stats
from hf_selectit.validation import pair_datasets, pair_layout

PROMPTS = ["What is 2+2?", "Name the capital of France.", "Say hello.", "Spell cat.", "Add 3 and 4."]
CHOSEN = ["2+2 is 4.", "Paris.", "Hello!", "C, A, T.", "3 + 4 = 7, so the answer is 7."]
REJECTED = ["5", "The capital of France is London, a city in England.", "No.", "dog", "12"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    return SelectITScorer(model=str(tiny_model_dir), prompts=2)


def _text_pairs() -> Dataset:
    return Dataset.from_dict({"prompt": PROMPTS, "chosen": CHOSEN, "rejected": REJECTED})


def _sharegpt_pairs() -> Dataset:
    return Dataset.from_dict({
        "conversations": [[{"from": "human", "value": p}] for p in PROMPTS],
        "chosen": [{"from": "gpt", "value": c} for c in CHOSEN],
        "rejected": [{"from": "gpt", "value": r} for r in REJECTED],
    })


def _messages_pairs() -> Dataset:
    def conv(p, a):
        return [{"role": "user", "content": p}, {"role": "assistant", "content": a}]
    return Dataset.from_dict({"chosen": [conv(p, c) for p, c in zip(PROMPTS, CHOSEN)],
                              "rejected": [conv(p, r) for p, r in zip(PROMPTS, REJECTED)]})


def test_pair_layouts_are_detected_and_split():
    assert pair_layout(_text_pairs()) == "text"
    assert pair_layout(_sharegpt_pairs()) == "sharegpt"
    assert pair_layout(_messages_pairs()) == "messages"
    chosen, rejected, _ = pair_datasets(_text_pairs())
    assert chosen[0] == {"instruction": PROMPTS[0], "input": "", "output": CHOSEN[0]}
    assert rejected[1]["output"] == REJECTED[1]
    chosen, rejected, _ = pair_datasets(_sharegpt_pairs())
    assert chosen[0]["conversations"] == [{"from": "human", "value": PROMPTS[0]},
                                          {"from": "gpt", "value": CHOSEN[0]}]
    # messages with the prompt in its own column (TRL's explicit-prompt layout)
    explicit = Dataset.from_dict({
        "prompt": [[{"role": "user", "content": p}] for p in PROMPTS],
        "chosen": [[{"role": "assistant", "content": c}] for c in CHOSEN],
        "rejected": [[{"role": "assistant", "content": r}] for r in REJECTED]})
    chosen, _, layout = pair_datasets(explicit)
    assert layout == "messages"
    assert chosen[2]["messages"] == [{"role": "user", "content": PROMPTS[2]},
                                     {"role": "assistant", "content": CHOSEN[2]}]


def test_pairs_end_to_end_on_the_tiny_model(scorer, tmp_path):
    report = validate(_text_pairs(), scorers=scorer, n_boot=200, seed=0, plot=str(tmp_path / "v.png"))
    assert isinstance(report, ValidationReport)
    assert report.mode == "pairs" and report.metric == "pairwise_accuracy" and report.n_items == 5

    # The same figure from the scorer mapped over the answers directly, compared by hand.
    def scores(answers):
        ds = Dataset.from_dict({"instruction": PROMPTS, "input": [""] * 5, "output": answers})
        return np.array(ds.map(scorer, batched=True)["selectit_sentence_score"])
    c, r = scores(CHOSEN), scores(REJECTED)
    by_hand = np.mean(np.where(c > r, 1.0, np.where(c == r, 0.5, 0.0)))
    row = report.result("selectit_sentence_score")
    assert row["role"] == "score" and row["value"] == pytest.approx(by_hand) and row["n"] == 5
    assert row["ci_low"] <= row["value"] <= row["ci_high"]

    # Baselines always present: chosen is longer in pairs 0, 2, 3, 4 (chars) -> 4 / 5.
    names = [x["name"] for x in report.results]
    assert names == ["selectit_sentence_score", "length_chars", "length_tokens", "random"]
    assert report.result("length_chars")["value"] == pytest.approx(0.8)
    assert report.result("random")["expected"] == 0.5
    for x in report.results:
        assert x["n"] == 5 and x["ci_low"] is not None and x["ci_high"] is not None
    # Agreement over the 10 answers, scores and length baselines.
    assert report.agreement["columns"] == ["selectit_sentence_score", "length_chars", "length_tokens"]
    assert report.agreement["spearman"]["length_chars"]["length_tokens"]["n"] == 10
    assert report.plot and open(report.plot, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    json.dumps(report.to_dict())
    md = report.to_markdown()
    assert "| `selectit_sentence_score` |" in md and "baseline: random scores" in md
    assert ValidationReport.from_dict(report.to_dict()) == report


def test_the_three_layouts_give_the_same_figures(scorer):
    # Single-turn chats read as (user text, answer), the same pair as the plain-text layout.
    figures = [validate(ds, scorers=scorer, n_boot=50).to_dict()["results"]
               for ds in (_text_pairs(), _sharegpt_pairs(), _messages_pairs())]
    assert figures[0] == figures[1] == figures[2]


def _demo(n=24):
    path = resources.files("hf_selectit") / "data" / "demo.jsonl"
    ds = load_dataset("json", data_files=str(path), split="train")
    # Every kind represented: rows spread over the file.
    return ds.select(range(0, len(ds), max(1, len(ds) // n)))


def test_scoring_again_over_real_scores_says_how_to_validate_them(scorer):
    # Defect: the error claimed the existing column was "not as numbers: ... of type float64".
    scored = _demo(8).map(scorer, batched=True)
    with pytest.raises(ConfigError, match=r"from an earlier scoring.*--no-score-first") as err:
        validate(scored, scorers=scorer, label="kind", positive="good", n_boot=10)
    assert "not as numbers" not in str(err.value)
    report = validate(scored, label="kind", positive="good", n_boot=10, tokenizer=False)
    assert report.result("selectit_sentence_score")["n"] == len(scored)


def test_label_column_end_to_end_on_the_tiny_model(scorer, tmp_path):
    ds = _demo()
    report = validate(ds, scorers=scorer, label="kind", positive="good", n_boot=200,
                      plot=str(tmp_path / "labels.png"))
    assert report.mode == "labels" and report.metric == "roc_auc"
    y = np.array([k == "good" for k in ds["kind"]])
    assert report.target["n_positive"] == int(y.sum()) and report.target["n_negative"] == int((~y).sum())
    scored = ds.map(scorer, batched=True)
    expected = stats.auc_statistic(np.array(scored["selectit_sentence_score"]), y)(np.ones(len(ds)))
    assert report.result("selectit_sentence_score")["value"] == pytest.approx(expected)
    lengths = np.array([len(t) for t in ds["output"]], dtype=float)
    assert report.result("length_chars")["value"] == pytest.approx(stats.auc_statistic(lengths, y)(np.ones(len(ds))))
    assert {r["name"] for r in report.results} >= {"length_chars", "length_tokens", "random"}
    assert open(report.plot, "rb").read(4) == b"\x89PNG"

    # On an already scored dataset, without scorers: the score columns are found by name, the
    # same figures come out, and a mapping works as positive=.
    again = validate(scored, label="kind", positive={"good": 1, "wrong": 0, "refusal": 0,
                                                      "off_topic": 0, "truncated": 0},
                     tokenizer=str(scorer.config.model), n_boot=200)
    assert again.result("selectit_sentence_score")["value"] == pytest.approx(expected)


def test_other_score_columns_are_baselines_and_numeric_labels_use_spearman(scorer):
    ds = _demo().map(scorer, batched=True)
    ds = ds.add_column("judge_score", [float(len(t) % 7) for t in ds["output"]])
    ds = ds.add_column("rating", [float(i % 5) for i in range(len(ds))])
    report = validate(ds, label="rating", columns=["selectit_sentence_score"], tokenizer=False, n_boot=50)
    assert report.metric == "spearman"
    assert report.result("selectit_sentence_score")["role"] == "score"
    assert report.result("judge_score")["role"] == "baseline"
    assert "length_tokens" not in [r["name"] for r in report.results]
    assert any("tokenizer=False" in note for note in report.notes)
    assert report.agreement["columns"] == ["selectit_sentence_score", "judge_score", "length_chars"]


def test_a_lower_is_better_baseline_column_says_so_in_the_table():
    # r-IFD shown beside the validated column: its row must say which end is better, as the
    # same column does when it is the one validated.
    n = 40
    ds = Dataset.from_dict({"selectit_sentence_score": [float(i % 7) for i in range(n)],
                            "rifd_score": [float(i % 5) for i in range(n)],
                            "rating": [float(i % 3) for i in range(n)]})
    report = validate(ds, label="rating", columns=["selectit_sentence_score"], tokenizer=False, n_boot=0)
    assert report.result("rifd_score")["role"] == "baseline"
    assert "| baseline: `rifd_score` (lower is better) |" in report.to_markdown()
    alone = validate(ds, label="rating", columns=["rifd_score"], tokenizer=False, n_boot=0)
    assert "| `rifd_score` (lower is better) |" in alone.to_markdown()


def test_errors_name_the_fix(scorer):
    ds = _demo(8)
    with pytest.raises(ConfigError, match="positive='good'"):
        validate(ds.map(scorer, batched=True), label="kind", n_boot=0)
    with pytest.raises(SchemaError, match="Label column 'grade' not found"):
        validate(ds, label="grade", n_boot=0)
    with pytest.raises(ConfigError, match="need a scorer"):
        validate(_text_pairs(), n_boot=0)
    with pytest.raises(ConfigError, match="not found in the label column"):
        validate(ds.map(scorer, batched=True), label="kind", positive="great", n_boot=0)


def test_scores_without_text_still_validate_with_a_note():
    ds = Dataset.from_dict({"judge_score": [0.1, 0.9, 0.8, 0.3], "ok": [0, 1, 1, 0]})
    report = validate(ds, label="ok", n_boot=20)
    assert report.result("judge_score")["value"] == pytest.approx(1.0)
    assert [r["name"] for r in report.results] == ["judge_score", "random"]
    assert any("no response text" in note for note in report.notes)


def test_several_methods_side_by_side(scorer, tiny_model_dir):
    from hf_selectit import AlpaGasusScorer, DeitaScorer

    scorers = [scorer, AlpaGasusScorer(model=str(tiny_model_dir)),
               DeitaScorer(model=str(tiny_model_dir), kind="quality")]
    report = validate(_text_pairs(), scorers=scorers, tokenizer=False, n_boot=20)
    scores = [r["name"] for r in report.results if r["role"] == "score"]
    assert scores == ["selectit_sentence_score", "alpagasus_score", "deita_quality"]
    assert all(report.result(c)["n"] == 5 for c in scores)
    assert report.agreement["columns"][:3] == scores


def test_run_validates_the_label_and_publishes_it(tmp_path, tiny_model_dir):
    from hf_selectit.config import ValidateConfig
    from hf_selectit.pipeline import load_pipeline_config, run_pipeline

    data = tmp_path / "demo.jsonl"
    _demo(16).to_json(str(data))
    out = tmp_path / "published"
    cfg = load_pipeline_config({
        "input": str(data), "shard_rows": 8,
        "models": [{"model": str(tiny_model_dir), "prompts": 2}],
        "select": {"ratio": 0.25},
        "publish": {"repo_id": str(out), "version": "v1.0", "license": "apache-2.0"},
    })
    cfg.validate = ValidateConfig(label="kind", positive="good", n_boot=50)
    summary, scored, subset = run_pipeline(cfg)
    v = summary.validation
    assert v["metric"] == "roc_auc" and v["column"] == "selectit_sentence_score" and v["n"] == len(scored)
    assert v["ci_low"] <= v["value"] <= v["ci_high"]
    assert set(v["baselines"]) >= {"length_chars", "length_tokens", "random"}
    prov = json.loads((out / "selectit.json").read_text())
    assert prov["validation"]["metric"] == "roc_auc" and prov["validation"]["n_items"] == len(scored)
    assert prov["validation"]["results"][0]["value"] == pytest.approx(v["value"])
    card = (out / "README.md").read_text()
    assert "## Validation" in card and "| `selectit_sentence_score` |" in card
    assert "baseline: response length (characters)" in card
    # The figure is published beside the card, and the provenance names the repo file, not a local path.
    assert prov["validation"]["plot"] == "selectit_validation.png" and "selectit_validation.png" in prov["files"]
    assert (out / "selectit_validation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![Validation: score distributions of the labelled classes](selectit_validation.png)" in card


def test_run_with_one_label_class_skips_validation_not_the_run(tmp_path, tiny_model_dir):
    from hf_selectit.config import ValidateConfig
    from hf_selectit.pipeline import load_pipeline_config, run_pipeline

    data = tmp_path / "good.jsonl"
    _demo().filter(lambda r: r["kind"] == "good").select(range(4)).to_json(str(data))
    cfg = load_pipeline_config({"input": str(data), "models": [{"model": str(tiny_model_dir), "prompts": 1}],
                                "select": {"ratio": 0.5}})
    cfg.validate = ValidateConfig(label="kind", positive="good", n_boot=10)
    summary, scored, subset = run_pipeline(cfg)
    assert summary.kept == 2 and "both classes" in summary.validation["skipped"]
