"""AlpaGasusScorer (METHOD.md 7.3) on the tiny in-process Llama with a chat template, against a
plain batch-1 reference of the authors' prompt with a local judge (full forward, full logits)."""

from __future__ import annotations

import logging
import math
import pickle
import time

import numpy as np
import pytest
import torch
from datasets import Dataset, load_from_disk
from datasets.fingerprint import Hasher

from hf_selectit import AlpaGasusScorer
from hf_selectit.errors import ConfigError, RatingTokenError
from hf_selectit.methods import alpagasus

from tests.tiny_lm import CHAT_TEMPLATE, build_tiny_model_dir

# The authors' two messages, copied here from gpt4life/alpagasus rating/chatgpt_rating.py (not
# imported from the package, so that a change there is caught).
SYSTEM = ("We would like to request your feedback on the performance of AI assistant in response to "
          "the instruction and the given input displayed following.")
USER = ("###Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{output}\n\n"
        "Please rate according to the accuracy of the response to the instruction and the input. Each "
        "assistant receives a score on a scale of 0 to 5, where a higher score indicates higher level of "
        "the accuracy. Please first output a single line containing value indicating the scores. In the "
        "subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any "
        "potential bias. \n\n")

ALPACA = {
    "instruction": ["Add two and two.", "Translate 'chat' to English.", "Name a colour.",
                    "Write a haiku about the sea, with care and rhythm.", "Summarise the text."],
    "input": ["", "French", "", "", "The cat sat on the mat. It was warm."],
    "output": ["4", "cat", "Blue.", "Waves fold into foam / salt wind carries the gull's cry", "A cat rested."],
}
# Multi-turn and system rows; X is the conversation before the last answer (METHOD.md section 1).
MESSAGES = {
    "messages": [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"},
         {"role": "assistant", "content": "4."}],
        [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Red."},
         {"role": "user", "content": "Another one?"}, {"role": "assistant", "content": "Blue."}],
    ]
}
MESSAGES_X = ["Be brief.\nWhat is 2 + 2?", "User: Name a colour.\nAssistant: Red.\nUser: Another one?"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference(model_dir, rows, *, max_length=None):
    """The authors' rating prompt through a local judge, one row at a time.

    rows: (instruction, input, output). Returns (score, argmax, mass) per row. With max_length,
    a too-long row loses the middle of its response (first ceil(k/2) and last floor(k/2)
    characters kept; the tiny tokenizer is character-level, so characters are tokens).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    digit_ids = [tok.convert_tokens_to_ids(str(k)) for k in range(6)]
    out = []
    for instruction, inp, output in rows:
        def ids_for(response):
            messages = [{"role": "system", "content": SYSTEM},
                        {"role": "user", "content": USER.format(instruction=instruction, input=inp, output=response)}]
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return tok(text, add_special_tokens=False, return_tensors="pt").input_ids

        ids = ids_for(output)
        if max_length is not None and ids.shape[1] > max_length:
            k = len(output) - (ids.shape[1] - max_length)
            head, tail = (k + 1) // 2, k // 2
            ids = ids_for(output[:head] + (output[len(output) - tail:] if tail else ""))
            assert ids.shape[1] == max_length
        with torch.no_grad():
            logits = model(ids).logits  # every position
        p = torch.softmax(logits[0, -1].double(), dim=-1)
        pd = [float(p[i]) for i in digit_ids]
        mass = sum(pd)
        pn = [v / mass for v in pd]
        out.append((sum(k * v for k, v in enumerate(pn)), max(range(6), key=lambda k: (pn[k], -k)), mass))
    return out


def _alpaca_rows(data):
    return list(zip(data["instruction"], data["input"], data["output"]))


def _check_against(out, ref, prefix="alpagasus_"):
    np.testing.assert_allclose(out[prefix + "score"], [r[0] for r in ref], atol=1e-4, rtol=0)
    assert out[prefix + "argmax"] == [r[1] for r in ref]
    np.testing.assert_allclose(out[prefix + "rating_mass"], [r[2] for r in ref], atol=1e-4, rtol=0)


# --- pure text --------------------------------------------------------------------------------


def test_messages_are_the_authors_verbatim():
    assert alpagasus.messages("Add", "", "4") == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": USER.format(instruction="Add", input="", output="4")},
    ]
    assert alpagasus.user_message("I", "ctx", "O") == USER.format(instruction="I", input="ctx", output="O")
    assert "###Instruction:" in alpagasus.user_message("I", "", "O")  # no space, as the authors


# --- scores -----------------------------------------------------------------------------------


def test_columns_and_equal_to_reference(tiny_model_dir):
    scorer = AlpaGasusScorer(str(tiny_model_dir))
    ds = Dataset.from_dict(ALPACA)
    out = ds.map(scorer, batched=True, load_from_cache_file=False)
    assert scorer.output_columns == ["alpagasus_score", "alpagasus_argmax", "alpagasus_rating_mass",
                                     "alpagasus_status"]
    assert set(scorer.output_columns) <= set(out.column_names) and out.num_rows == ds.num_rows
    assert out["alpagasus_status"] == ["ok"] * ds.num_rows
    ref = reference(tiny_model_dir, _alpaca_rows(ALPACA))
    _check_against(out.to_dict(), ref)
    assert all(0 <= s <= 5 for s in out["alpagasus_score"])
    # The tiny model's scores differ by row, so the equality above could fail.
    assert len({round(s, 6) for s in out["alpagasus_score"]}) == ds.num_rows


def test_batch_sizes_and_budgets_agree(tiny_model_dir):
    data = {k: v * 3 for k, v in ALPACA.items()}
    data["output"] = [o * (1 + i % 4) for i, o in enumerate(data["output"])]
    ds = Dataset.from_dict(data)
    runs = [ds.map(AlpaGasusScorer(str(tiny_model_dir), max_batch_tokens=budget), batched=True,
                   batch_size=bs, load_from_cache_file=False)["alpagasus_score"]
            for bs, budget in ((1, None), (4, None), (64, None), (64, 1))]
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(runs[0], [r[0] for r in reference(tiny_model_dir, _alpaca_rows(data))],
                               atol=1e-4, rtol=0)


def test_chat_rows_multi_turn(tiny_model_dir):
    out = AlpaGasusScorer(str(tiny_model_dir))(MESSAGES)
    assert out["alpagasus_status"] == ["ok", "ok"]
    ref = reference(tiny_model_dir, [(MESSAGES_X[0], "", "4."), (MESSAGES_X[1], "", "Blue.")])
    _check_against(out, ref)


def test_truncated_row_keeps_the_rating_request(tiny_model_dir):
    long = "START " + "lorem ipsum " * 60 + "END"
    data = {"instruction": ["Write filler text.", "Add two and two."], "input": ["", ""], "output": [long, "4"]}
    scorer = AlpaGasusScorer(str(tiny_model_dir), max_length=700)
    out = scorer(data)
    assert out["alpagasus_status"] == ["truncated", "ok"]
    _check_against(out, reference(tiny_model_dir, _alpaca_rows(data), max_length=700))


def test_bad_rows_are_marked_not_dropped(tiny_model_dir):
    data = {"instruction": ["Add two and two.", "", "Name a colour."], "input": ["", "", ""],
            "output": ["4", "x", "   "]}
    out = AlpaGasusScorer(str(tiny_model_dir))(data)
    assert out["alpagasus_status"][0] == "ok"
    assert out["alpagasus_status"][1].startswith("error: ") and out["alpagasus_status"][2].startswith("error: ")
    assert math.isnan(out["alpagasus_score"][1]) and math.isnan(out["alpagasus_rating_mass"][2])
    assert math.isnan(out["alpagasus_argmax"][1])
    np.testing.assert_allclose(out["alpagasus_score"][0], reference(tiny_model_dir, [("Add two and two.", "", "4")])[0][0],
                               atol=1e-4)
    assert AlpaGasusScorer(str(tiny_model_dir))({"instruction": [], "input": [], "output": []}) == {
        name: [] for name in AlpaGasusScorer(str(tiny_model_dir)).output_columns}


def test_all_error_first_batch_then_scored_rows_map(tiny_model_dir):
    # The first map batch has no scored row: every column must still have a concrete type.
    data = {"instruction": ["", "Add two and two."], "input": ["", ""], "output": ["x", "4"]}
    out = Dataset.from_dict(data).map(AlpaGasusScorer(str(tiny_model_dir)), batched=True, batch_size=1)
    assert out["alpagasus_status"][1] == "ok" and out["alpagasus_argmax"][1] in (0, 1, 2, 3, 4, 5)


def test_model_without_chat_template_is_a_clear_error(tmp_path):
    model_dir = build_tiny_model_dir(tmp_path / "nochat", chat_template=None)
    with pytest.raises(ConfigError, match="chat template") as err:
        AlpaGasusScorer(str(model_dir))(ALPACA)
    assert "instruction-tuned" in str(err.value) or "chat_template" in str(err.value)


def test_tokenizer_without_single_digit_tokens_is_refused(tmp_path):
    model_dir = build_tiny_model_dir(tmp_path / "nodigits", digits="none", chat_template=CHAT_TEMPLATE)
    with pytest.raises(RatingTokenError, match="'0'"):
        AlpaGasusScorer(str(model_dir))(ALPACA)


def test_low_rating_mass_warns_once(tiny_model_dir, caplog):
    # The tiny random model puts almost nothing on the digits: exactly the case to warn about.
    scorer = AlpaGasusScorer(str(tiny_model_dir), column_prefix="warn_")
    with caplog.at_level(logging.WARNING):
        out = scorer(ALPACA)
        scorer(ALPACA)
    assert np.median(out["warn_rating_mass"]) < 0.5
    warnings = [r for r in caplog.records if "rating_mass" in r.getMessage()]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "instruction-tuned" in message and "larger" in message


# --- map contract, fingerprint, provenance ----------------------------------------------------


def test_fingerprint_is_fast_config_only_and_hits_the_cache(tiny_model_dir, tmp_path):
    scorer = AlpaGasusScorer(str(tiny_model_dir))
    Hasher.hash(scorer)
    h = Hasher.hash(scorer)
    # Microseconds because only the config is hashed: a few hundred bytes, never the weights
    # (asserted through the pickled size, not a wall-clock limit on a shared machine).
    assert len(pickle.dumps(scorer)) < 4000
    assert h == Hasher.hash(AlpaGasusScorer(str(tiny_model_dir), device="cpu", max_batch_tokens=77))
    changed = [dict(max_length=512), dict(column_prefix="j_"), dict(dtype="bfloat16")]
    hashes = {Hasher.hash(AlpaGasusScorer(str(tiny_model_dir), **kw)) for kw in changed}
    assert h not in hashes and len(hashes) == len(changed)
    assert len(pickle.dumps(scorer)) < 2000
    Dataset.from_dict(ALPACA).save_to_disk(tmp_path / "ds")
    ds = load_from_disk(str(tmp_path / "ds"))
    first = AlpaGasusScorer(str(tiny_model_dir))
    out1 = ds.map(first, batched=True)
    second = AlpaGasusScorer(str(tiny_model_dir))
    out2 = ds.map(second, batched=True)
    assert second.forward_calls == 0 and out2.cache_files == out1.cache_files


def test_num_proc_2_with_rank(tiny_model_dir, tmp_path):
    Dataset.from_dict(ALPACA).save_to_disk(tmp_path / "ds")
    ds = load_from_disk(str(tmp_path / "ds"))
    par = ds.map(AlpaGasusScorer(str(tiny_model_dir)), batched=True, batch_size=2, num_proc=2, with_rank=True)
    assert par["instruction"] == ds["instruction"]
    np.testing.assert_allclose(par["alpagasus_score"], [r[0] for r in reference(tiny_model_dir, _alpaca_rows(ALPACA))],
                               atol=1e-4, rtol=0)


def test_info_records_method_and_options(tiny_model_dir):
    info = AlpaGasusScorer(str(tiny_model_dir), max_length=900).info()
    assert info["method"] == "alpagasus" and "AlpaGasus" in info["method_description"]
    assert info["model"] == str(tiny_model_dir) and info["max_length"] == 900
    assert info["rating_tokens"]["pieces"] == ["0", "1", "2", "3", "4", "5"]
    assert info["system_prompt"] == SYSTEM and "{instruction}" in info["user_template"]
    assert info["options"]["max_length"] == 900


def test_invalid_options_fail_at_construction():
    with pytest.raises(ConfigError):
        AlpaGasusScorer(max_length=3)
    with pytest.raises(ConfigError):
        AlpaGasusScorer(column_prefix=5)


def test_paper_threshold_selection_on_the_scored_columns():
    from hf_selectit import select_top

    ds = Dataset.from_dict({
        "instruction": list("abcdef"),
        "alpagasus_score": [4.9, 4.5, 4.49, float("nan"), 5.0, 4.6],
        "alpagasus_status": ["ok", "truncated", "ok", "error: empty response", "ok", "ok"],
    })
    kept = select_top(ds, column="alpagasus_score", threshold=alpagasus.PAPER_THRESHOLD)
    assert alpagasus.PAPER_THRESHOLD == 4.5
    assert kept["instruction"] == ["a", "b", "e", "f"]  # >= 4.5, error rows never, dataset order
