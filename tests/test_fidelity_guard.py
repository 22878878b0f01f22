"""METHOD.md 7.5 for SelectIT: the `selectit_rating_mass` column and the low-mass warning, on the tiny model."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from hf_selectit import SelectITScorer
from hf_selectit.errors import RatingTokenError

from tests.tiny_lm import build_tiny_model_dir

PROMPT_1 = ("Assign a score from 1 to 5 to each assistant based on how accurately they follow the instructions "
            "and response provided, ensuring the score is represented clearly on its own.")
PROMPT_2 = ("Score each assistant on a scale from one to five, reflecting the accuracy of their adherence to the "
            "instructions and input, and present this score plainly without the need for extra details.")
ROWS = [("Add two and two.", "4"), ("Name a colour.", "Blue."), ("Say hi", "hi!")]


def _reference_mass(model_dir, rows, prompts):
    """Full-vocabulary probability on "1".."5" at the last position, mean over prompts; batch 1, full logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids5 = [tok.convert_tokens_to_ids(str(k)) for k in range(1, 6)]
    out = []
    for x, y in rows:
        masses = []
        for rp in prompts:
            ids = tok(f"{rp}\n\nInstruction:{x}\nResponse:{y}\nThe answer is: \n", return_tensors="pt").input_ids
            with torch.no_grad():
                p = torch.softmax(model(ids).logits[0, -1].double(), dim=-1)
            masses.append(float(p[ids5].sum()))
        out.append(sum(masses) / len(masses))
    return out


def test_selectit_rating_mass_column_and_one_warning(tiny_model_dir, caplog):
    data = {"instruction": [r[0] for r in ROWS], "output": [r[1] for r in ROWS]}
    scorer = SelectITScorer(str(tiny_model_dir), prompts=2, column_prefix="guard_")
    with caplog.at_level(logging.WARNING):
        out = scorer(data)
        scorer(data)
    assert "guard_rating_mass" in scorer.output_columns
    np.testing.assert_allclose(out["guard_rating_mass"], _reference_mass(tiny_model_dir, ROWS, [PROMPT_1, PROMPT_2]),
                               atol=1e-6, rtol=1e-4)
    assert all(0 < m < 1 for m in out["guard_rating_mass"])
    warnings = [r.getMessage() for r in caplog.records if "guard_rating_mass" in r.getMessage()]
    assert len(warnings) == 1  # the random tiny model puts little mass on the digits
    assert "SelectIT" in warnings[0] and "instruction-tuned" in warnings[0] and "template='chat'" in warnings[0]


def test_rating_mass_is_nan_for_rows_not_scored(tiny_model_dir):
    out = SelectITScorer(str(tiny_model_dir), prompts=1)({"instruction": ["Add.", ""], "output": ["4", "x"]})
    assert out["selectit_status"][1].startswith("error: ")
    assert np.isfinite(out["selectit_rating_mass"][0]) and np.isnan(out["selectit_rating_mass"][1])


def test_selectit_refuses_a_tokenizer_without_distinct_rating_tokens(tmp_path):
    model_dir = build_tiny_model_dir(tmp_path / "nodigits", digits="none")
    with pytest.raises(RatingTokenError, match="distinct"):
        SelectITScorer(str(model_dir))({"instruction": ["Add."], "output": ["4"]})
