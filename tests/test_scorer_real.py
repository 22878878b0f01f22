"""The scorer on the real embedded SmolLM2-135M-Instruct (slow: converts/loads a 135M model on CPU)."""

from __future__ import annotations


import numpy as np
import pytest
from datasets import Dataset

from hf_selectit import SelectITScorer

pytestmark = pytest.mark.slow

ALPACA = {
    "instruction": ["Give three tips for staying healthy.", "What is the capital of France?",
                    "Translate to French.", "Write a sentence."],
    "input": ["", "", "Good morning", ""],
    "output": ["1. Eat a balanced diet. 2. Exercise regularly. 3. Sleep well.", "Paris.",
               "Bonjour", "banana banana banana"],
}
MESSAGES = {
    "messages": [
        [{"role": "system", "content": "You are helpful."},
         {"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "2 + 2 = 4."}],
        [{"role": "user", "content": "Name a primary colour."}, {"role": "assistant", "content": "Red."},
         {"role": "user", "content": "Another one?"}, {"role": "assistant", "content": "Blue."}],
    ]
}


def _check(out, n):
    assert out["selectit_status"] == ["ok"] * n
    scores = np.array(out["selectit_sentence_score"])
    tokens = np.array(out["selectit_token_scores"])
    assert np.all(np.isfinite(scores)) and np.all((scores >= 0) & (scores <= 5))
    assert tokens.shape == (n, 5) and np.all((tokens >= 0) & (tokens <= 5))


def test_embedded_scores_alpaca_and_messages_and_rerun_is_identical():
    scorer = SelectITScorer()
    out = Dataset.from_dict(ALPACA).map(scorer, batched=True, load_from_cache_file=False)
    _check(out, 4)
    again = SelectITScorer()(ALPACA)
    assert again["selectit_sentence_score"] == out["selectit_sentence_score"]
    msgs = Dataset.from_dict(MESSAGES).map(scorer, batched=True, load_from_cache_file=False)
    _check(msgs, 2)


def test_embedded_info_and_rating_tokens():
    info = SelectITScorer().info()
    assert info["model"] == "embedded:SmolLM2-135M-Instruct-Q4_1"
    assert info["rating_tokens"]["variant"] == "bare"
    assert info["rating_tokens"]["pieces"] == ["1", "2", "3", "4", "5"]
    assert 130e6 < info["parameter_count"] < 140e6
    assert info["max_length"] == 8192 and info["dtype"] == "float32"


def test_recorded_embedded_id_loads_the_embedded_model():
    # Provenance (selectit.json, the card's reproduce snippet) records the id from info();
    # passing it back must score with the same model, not fail as an unknown Hub id.
    recorded = SelectITScorer().info()["model"]
    expected = SelectITScorer()(ALPACA)["selectit_sentence_score"]
    for name in (recorded, "embedded"):
        assert SelectITScorer(name)(ALPACA)["selectit_sentence_score"] == expected


def test_embedded_batch_sizes_agree_and_chat_mode_runs():
    ds = Dataset.from_dict(ALPACA)
    a = ds.map(SelectITScorer(prompts=2), batched=True, batch_size=1, load_from_cache_file=False)
    b = ds.map(SelectITScorer(prompts=2), batched=True, batch_size=4, load_from_cache_file=False)
    np.testing.assert_allclose(a["selectit_token_scores"], b["selectit_token_scores"], atol=1e-4)
    chat = SelectITScorer(prompts=2, template="chat")(ALPACA)
    assert chat["selectit_status"] == ["ok"] * 4 and np.all(np.isfinite(chat["selectit_sentence_score"]))


def test_converted_copy_is_reused():
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    from hf_selectit.models import embedded_model_path

    path = embedded_model_path()  # converted already (by the tests above or an earlier run)
    weights = Path(path) / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert embedded_model_path() == path  # found, not converted again
    assert weights.stat().st_mtime_ns == stamp
    AutoModelForCausalLM.from_pretrained(path)  # a plain safetensors folder transformers loads
