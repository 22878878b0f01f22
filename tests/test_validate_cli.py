"""`hf-selectit validate`: Markdown on stdout, --json for machines, --plot, exit codes."""

from __future__ import annotations

import json

import pytest

from hf_selectit.cli import main

PAIRS = [
    {"prompt": "What is 2+2?", "chosen": "2+2 is 4.", "rejected": "5"},
    {"prompt": "Name the capital of France.", "chosen": "Paris.", "rejected": "London, in England."},
    {"prompt": "Say hello.", "chosen": "Hello!", "rejected": "No."},
    {"prompt": "Spell cat.", "chosen": "C, A, T.", "rejected": "dog"},
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_validate_pairs_json_and_plot(tmp_path, tiny_model_dir, capsys):
    data = _jsonl(tmp_path / "pairs.jsonl", PAIRS)
    out, png = tmp_path / "report.json", tmp_path / "dist.png"
    code = main(["validate", data, "--model", str(tiny_model_dir), "--prompts", "2", "--n-boot", "100",
                 "--json", str(out), "--plot", str(png)])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "| `selectit_sentence_score` |" in stdout and "baseline: random scores" in stdout
    report = json.loads(out.read_text())
    assert report["mode"] == "pairs" and report["metric"] == "pairwise_accuracy"
    assert report["target"] == {"layout": "text", "pairs": 4, "answers": 8}
    names = [r["name"] for r in report["results"]]
    assert names == ["selectit_sentence_score", "length_chars", "length_tokens", "random"]
    # chosen is longer in pairs 0, 2, 3 and shorter in pair 1 -> 3 / 4
    length = next(r for r in report["results"] if r["name"] == "length_chars")
    assert length["value"] == pytest.approx(0.75) and length["n"] == 4
    for r in report["results"]:
        assert r["ci_low"] is not None and r["ci_low"] <= r["value"] <= r["ci_high"]
    assert report["settings"]["n_boot"] == 100 and report["plot"] == str(png)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_validate_label_column_on_scored_rows(tmp_path, capsys):
    rows = [{"instruction": f"q{i}", "output": "a" * (i + 1), "judge_score": float(i),
             "kind": "good" if i >= 3 else "bad"} for i in range(6)]
    data = _jsonl(tmp_path / "scored.jsonl", rows)
    out = tmp_path / "r.json"
    code = main(["validate", data, "--label", "kind", "--positive", "good", "--tokenizer", "none",
                 "--n-boot", "50", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["metric"] == "roc_auc" and report["target"]["n_positive"] == 3
    assert report["results"][0]["name"] == "judge_score" and report["results"][0]["value"] == 1.0
    assert "ROC-AUC" in capsys.readouterr().out


def test_validate_text_label_without_positive_is_a_user_error(tmp_path, capsys):
    rows = [{"instruction": "q", "output": "a", "judge_score": 1.0, "kind": k} for k in ("good", "bad", "meh")]
    code = main(["validate", _jsonl(tmp_path / "s.jsonl", rows), "--label", "kind", "--n-boot", "0"])
    assert code == 2
    assert "positive='good'" in capsys.readouterr().err
