"""DeitaScorer (METHOD.md 7.4) on the tiny in-process Llama, against a plain batch-1 reference of
DEITA's scorer (full forward, full logits, softmax over the logits of "1".."6")."""

from __future__ import annotations

import logging
import math
import pickle

import numpy as np
import pytest
import torch
from datasets import Dataset, load_from_disk
from datasets.fingerprint import Hasher

from hf_selectit import DeitaScorer
from hf_selectit.errors import ConfigError, RatingTokenError
from hf_selectit.methods import deita

from tests.tiny_lm import build_tiny_model_dir

# Copied from hkust-nlp/deita src/deita/selection/scorer/llama_scorer.py (not imported).
QUALITY = ("You are a helpful assistant. Please identify the quality score of the Response corresponding to "
           "the Question. \n #Question#:\n{instruction}\n#Response#:\n{output} \n##Quality: ")
COMPLEXITY = ("You are a helpful assistant. Please identify the complexity score of the following user query. "
              "\n##Query: {instruction}  \n##Complexity: ")

ALPACA = {
    "instruction": ["Add two and two.", "Translate 'chat' to English.", "Name a colour.",
                    "Write a haiku about the sea, with care and rhythm.", "Summarise the text."],
    "input": ["", "French", "", "", "The cat sat on the mat. It was warm."],
    "output": ["4", "cat", "Blue.", "Waves fold into foam / salt wind carries the gull's cry", "A cat rested."],
}
# X of METHOD.md section 1: instruction + "\n" + input when there is an input.
ALPACA_X = ["Add two and two.", "Translate 'chat' to English.\nFrench", "Name a colour.",
            "Write a haiku about the sea, with care and rhythm.", "Summarise the text.\nThe cat sat on the mat. It was warm."]
MESSAGES = {
    "conversations": [
        [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "What is 2 + 2?"},
         {"from": "gpt", "value": "4."}],
        [{"from": "human", "value": "Name a colour."}, {"from": "gpt", "value": "Red."},
         {"from": "human", "value": "Another one?"}, {"from": "gpt", "value": "Blue."}],
    ]
}
MESSAGES_X = ["Be brief.\nWhat is 2 + 2?", "User: Name a colour.\nAssistant: Red.\nUser: Another one?"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference(model_dir, texts):
    """DEITA's infer_score, one text at a time: returns (expected rating, mass on "1".."6")."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids6 = [tok.convert_tokens_to_ids(str(k)) for k in range(1, 7)]
    out = []
    for text in texts:
        ids = tok.encode(text, return_tensors="pt")  # BOS added, as DEITA's tokenizer.encode
        with torch.no_grad():
            logits = model(ids).logits[0, -1].double()  # every position computed
        score_logits = torch.stack([logits[i] for i in ids6])
        p6 = torch.softmax(score_logits, dim=0)
        mass = float(torch.softmax(logits, dim=0)[ids6].sum())
        out.append((float((p6 * torch.arange(1, 7, dtype=torch.float64)).sum()), mass))
    return out


def cut_middle(text, k):
    """The first ceil(k/2) and last floor(k/2) characters (tokens of the tiny tokenizer)."""
    head, tail = (k + 1) // 2, k // 2
    return text[:head] + (text[len(text) - tail:] if tail else "")


def test_prompts_are_deitas_verbatim():
    assert deita.quality_prompt("Q", "A") == QUALITY.format(instruction="Q", output="A")
    assert deita.complexity_prompt("Q") == COMPLEXITY.format(instruction="Q")


def test_both_equals_reference(tiny_model_dir):
    scorer = DeitaScorer(str(tiny_model_dir))
    ds = Dataset.from_dict(ALPACA)
    out = ds.map(scorer, batched=True, load_from_cache_file=False)
    assert scorer.output_columns == ["deita_quality", "deita_complexity", "deita_score", "deita_rating_mass",
                                     "deita_status"]
    assert out["deita_status"] == ["ok"] * ds.num_rows
    q = reference(tiny_model_dir, [QUALITY.format(instruction=x, output=y) for x, y in zip(ALPACA_X, ALPACA["output"])])
    c = reference(tiny_model_dir, [COMPLEXITY.format(instruction=x) for x in ALPACA_X])
    np.testing.assert_allclose(out["deita_quality"], [r[0] for r in q], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["deita_complexity"], [r[0] for r in c], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["deita_score"], [a[0] * b[0] for a, b in zip(q, c)], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["deita_rating_mass"], [(a[1] + b[1]) / 2 for a, b in zip(q, c)], atol=1e-4, rtol=0)
    assert all(1 <= s <= 6 for s in list(out["deita_quality"]) + list(out["deita_complexity"]))
    assert len({round(s, 6) for s in out["deita_quality"]}) == ds.num_rows


@pytest.mark.parametrize("kind", ["quality", "complexity"])
def test_single_kind(tiny_model_dir, kind):
    scorer = DeitaScorer(str(tiny_model_dir), kind=kind)
    out = scorer(ALPACA)
    assert scorer.output_columns == [f"deita_{kind}", "deita_rating_mass", "deita_status"]
    assert sorted(out) == sorted(scorer.output_columns)
    if kind == "quality":
        texts = [QUALITY.format(instruction=x, output=y) for x, y in zip(ALPACA_X, ALPACA["output"])]
    else:
        texts = [COMPLEXITY.format(instruction=x) for x in ALPACA_X]
    ref = reference(tiny_model_dir, texts)
    np.testing.assert_allclose(out[f"deita_{kind}"], [r[0] for r in ref], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["deita_rating_mass"], [r[1] for r in ref], atol=1e-4, rtol=0)


def test_chat_rows_multi_turn(tiny_model_dir):
    out = DeitaScorer(str(tiny_model_dir))(MESSAGES)
    assert out["deita_status"] == ["ok", "ok"]
    q = reference(tiny_model_dir, [QUALITY.format(instruction=x, output=y) for x, y in zip(MESSAGES_X, ["4.", "Blue."])])
    c = reference(tiny_model_dir, [COMPLEXITY.format(instruction=x) for x in MESSAGES_X])
    np.testing.assert_allclose(out["deita_quality"], [r[0] for r in q], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["deita_complexity"], [r[0] for r in c], atol=1e-4, rtol=0)


def test_batch_sizes_and_budgets_agree(tiny_model_dir):
    data = {k: v * 3 for k, v in ALPACA.items()}
    data["output"] = [o * (1 + i % 4) for i, o in enumerate(data["output"])]
    ds = Dataset.from_dict(data)
    runs = [ds.map(DeitaScorer(str(tiny_model_dir), max_batch_tokens=budget), batched=True, batch_size=bs,
                   load_from_cache_file=False)["deita_score"]
            for bs, budget in ((1, None), (4, None), (64, None), (64, 1))]
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], atol=1e-5, rtol=0)


def test_truncated_rows(tiny_model_dir):
    long_response = "START " + "lorem ipsum " * 40 + "END"
    long_instruction = "BEGIN " + "words " * 80
    data = {"instruction": ["Write filler text.", long_instruction, "Add two and two."],
            "output": [long_response, "short answer", "4"]}
    max_length = 300
    out = DeitaScorer(str(tiny_model_dir), max_length=max_length)(data)
    assert out["deita_status"] == ["truncated", "truncated", "ok"]
    # Row 0: the quality prompt's response loses its middle; its complexity prompt fits.
    fixed_q = 1 + len(QUALITY.format(instruction="", output=""))
    q0 = QUALITY.format(instruction="Write filler text.",
                        output=cut_middle(long_response, max_length - fixed_q - len("Write filler text.")))
    # Row 1: the instruction leaves the short response whole and loses its own tail in both prompts.
    fixed_c = 1 + len(COMPLEXITY.format(instruction=""))
    q1 = QUALITY.format(instruction=long_instruction[: max_length - fixed_q - len("short answer")], output="short answer")
    c1 = COMPLEXITY.format(instruction=long_instruction[: max_length - fixed_c])
    q = reference(tiny_model_dir, [q0, q1, QUALITY.format(instruction="Add two and two.", output="4")])
    c = reference(tiny_model_dir, [COMPLEXITY.format(instruction="Write filler text."), c1,
                                   COMPLEXITY.format(instruction="Add two and two.")])
    np.testing.assert_allclose(out["deita_quality"], [r[0] for r in q], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["deita_complexity"], [r[0] for r in c], atol=1e-4, rtol=0)


def test_bad_rows_are_marked_not_dropped(tiny_model_dir):
    data = {"instruction": ["Add two and two.", None, "Name a colour."], "output": ["4", "x", ""]}
    out = DeitaScorer(str(tiny_model_dir))(data)
    assert out["deita_status"][0] == "ok"
    assert all(s.startswith("error: ") for s in out["deita_status"][1:])
    assert all(math.isnan(v) for v in out["deita_score"][1:] + out["deita_quality"][1:] + out["deita_rating_mass"][1:])


def test_tokenizer_without_distinct_digit_tokens_is_refused_not_defaulted(tmp_path):
    model_dir = build_tiny_model_dir(tmp_path / "nodigits", digits="none")
    with pytest.raises(RatingTokenError, match="'6'"):
        DeitaScorer(str(model_dir))(ALPACA)


def test_low_rating_mass_warns_once(tiny_model_dir, caplog):
    scorer = DeitaScorer(str(tiny_model_dir), column_prefix="warn_")
    with caplog.at_level(logging.WARNING):
        out = scorer(ALPACA)
        scorer(ALPACA)
    assert np.median(out["warn_rating_mass"]) < 0.5
    assert len([r for r in caplog.records if "rating_mass" in r.getMessage()]) == 1


def test_fingerprint_cache_and_kind(tiny_model_dir, tmp_path):
    scorer = DeitaScorer(str(tiny_model_dir))
    Hasher.hash(scorer)
    h = Hasher.hash(scorer)
    # Microseconds because only the config is hashed: a few hundred bytes, never the weights
    # (asserted through the pickled size, not a wall-clock limit on a shared machine).
    assert len(pickle.dumps(scorer)) < 4000
    assert h == Hasher.hash(DeitaScorer(str(tiny_model_dir), device="cpu", max_batch_tokens=5))
    assert h != Hasher.hash(DeitaScorer(str(tiny_model_dir), kind="quality"))
    assert len(pickle.dumps(scorer)) < 2000
    Dataset.from_dict(ALPACA).save_to_disk(tmp_path / "ds")
    ds = load_from_disk(str(tmp_path / "ds"))
    out1 = ds.map(DeitaScorer(str(tiny_model_dir)), batched=True)
    second = DeitaScorer(str(tiny_model_dir))
    out2 = ds.map(second, batched=True)
    assert second.forward_calls == 0 and out2.cache_files == out1.cache_files


def test_num_proc_2_with_rank(tiny_model_dir, tmp_path):
    Dataset.from_dict(ALPACA).save_to_disk(tmp_path / "ds")
    ds = load_from_disk(str(tmp_path / "ds"))
    par = ds.map(DeitaScorer(str(tiny_model_dir)), batched=True, batch_size=2, num_proc=2, with_rank=True)
    seq = DeitaScorer(str(tiny_model_dir))(ALPACA)
    np.testing.assert_allclose(par["deita_score"], seq["deita_score"], atol=1e-4, rtol=0)


def test_info_and_invalid_kind(tiny_model_dir):
    info = DeitaScorer(str(tiny_model_dir), kind="quality").info()
    assert info["method"] == "deita" and "DEITA" in info["method_description"] and info["options"]["kind"] == "quality"
    assert info["rating_tokens"]["pieces"] == ["1", "2", "3", "4", "5", "6"]
    assert info["templates"] == {"quality": QUALITY}
    with pytest.raises(ConfigError, match="kind"):
        DeitaScorer(kind="fancy")


def test_config_dispatch_finds_the_scorer(tiny_model_dir):
    from hf_selectit import AlpaGasusConfig, AlpaGasusScorer, DeitaConfig
    from hf_selectit.config import METHOD_CONFIGS
    from hf_selectit.pipeline import make_scorer

    assert METHOD_CONFIGS["deita"] is DeitaConfig and METHOD_CONFIGS["alpagasus"] is AlpaGasusConfig
    scorer = make_scorer(DeitaConfig(model=str(tiny_model_dir), kind="complexity"))
    assert isinstance(scorer, DeitaScorer) and scorer.output_columns[0] == "deita_complexity"
    assert scorer(ALPACA) == DeitaScorer(str(tiny_model_dir), kind="complexity")(ALPACA)
    assert isinstance(make_scorer(AlpaGasusConfig(model=str(tiny_model_dir))), AlpaGasusScorer)
