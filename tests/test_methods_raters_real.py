"""AlpaGasus and DEITA on the real embedded SmolLM2-135M-Instruct (it has a chat template) against the
plain batch-1 references of tests/test_methods_alpagasus.py and tests/test_methods_deita.py (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_selectit import AlpaGasusScorer, DeitaScorer

from tests import test_methods_alpagasus as ag
from tests import test_methods_deita as dt

pytestmark = pytest.mark.slow

LONG = "Start of a long answer. " + "It keeps going with more and more words about nothing. " * 40 + "The end."
ALPACA = {
    "instruction": ["Give three tips for staying healthy.", "Translate to French.", "What is the capital of France?",
                    "Write a long answer."],
    "input": ["", "Good morning", "", ""],
    "output": ["1. Eat a balanced diet. 2. Exercise regularly. 3. Sleep well.", "Bonjour", "Paris.", LONG],
}
ALPACA_X = ["Give three tips for staying healthy.", "Translate to French.\nGood morning",
            "What is the capital of France?", "Write a long answer."]
MAX_LENGTH = 400  # only the last row is longer: it loses the middle of its response


@pytest.fixture(scope="module")
def smol():
    from hf_selectit.models import embedded_model_path

    return embedded_model_path()


def _cut_ids(tok, text, start, end, max_length, *, special):
    """Token ids of `text` whose response (characters start..end) lost its middle to fit max_length."""
    enc = tok(text, add_special_tokens=special, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    inside = [i for i, (a, b) in enumerate(offsets) if a < b and start <= a and b <= end]
    k = len(inside) - (len(ids) - max_length)
    head, tail = (k + 1) // 2, k // 2
    drop = set(inside[head:len(inside) - tail])
    return [t for i, t in enumerate(ids) if i not in drop]


def _last_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].double()  # full logits, every position


def test_alpagasus_equals_reference_on_smollm2(smol):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = AlpaGasusScorer(max_length=MAX_LENGTH)({**ALPACA})
    assert out["alpagasus_status"] == ["ok", "ok", "ok", "truncated"]
    ref = ag.reference(smol, list(zip(ALPACA["instruction"], ALPACA["input"], ALPACA["output"]))[:3])
    tok = AutoTokenizer.from_pretrained(smol)
    model = AutoModelForCausalLM.from_pretrained(smol, dtype=torch.float32).eval()
    user = ag.USER.format(instruction=ALPACA["instruction"][3], input="", output=LONG)
    text = tok.apply_chat_template([{"role": "system", "content": ag.SYSTEM}, {"role": "user", "content": user}],
                                   tokenize=False, add_generation_prompt=True)
    start = text.index(LONG)
    ids = _cut_ids(tok, text, start, start + len(LONG), MAX_LENGTH, special=False)
    assert len(ids) == MAX_LENGTH
    p = torch.softmax(_last_logits(model, ids), dim=-1)
    pd = [float(p[tok.convert_tokens_to_ids(str(k))]) for k in range(6)]
    pn = [v / sum(pd) for v in pd]
    ref.append((sum(k * v for k, v in enumerate(pn)), max(range(6), key=lambda k: (pn[k], -k)), sum(pd)))
    ag._check_against(out, ref)
    chat = AlpaGasusScorer()(ag.MESSAGES)
    ag._check_against(chat, ag.reference(smol, [(ag.MESSAGES_X[0], "", "4."), (ag.MESSAGES_X[1], "", "Blue.")]))


def test_deita_equals_reference_on_smollm2(smol):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = DeitaScorer(max_length=MAX_LENGTH)({k: v for k, v in ALPACA.items()})
    assert out["deita_status"] == ["ok", "ok", "ok", "truncated"]
    q_texts = [dt.QUALITY.format(instruction=x, output=y) for x, y in zip(ALPACA_X, ALPACA["output"])]
    c_texts = [dt.COMPLEXITY.format(instruction=x) for x in ALPACA_X]
    q = dt.reference(smol, q_texts[:3])
    c = dt.reference(smol, c_texts)
    tok = AutoTokenizer.from_pretrained(smol)
    model = AutoModelForCausalLM.from_pretrained(smol, dtype=torch.float32).eval()
    start = q_texts[3].index(LONG)
    ids = _cut_ids(tok, q_texts[3], start, start + len(LONG), MAX_LENGTH, special=True)
    logits = _last_logits(model, ids)
    six = torch.stack([logits[tok.convert_tokens_to_ids(str(k))] for k in range(1, 7)])
    q.append((float((torch.softmax(six, 0) * torch.arange(1, 7, dtype=torch.float64)).sum()), None))
    np.testing.assert_allclose(out["deita_quality"], [r[0] for r in q], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["deita_complexity"], [r[0] for r in c], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["deita_score"], [a[0] * b[0] for a, b in zip(q, c)], atol=1e-3, rtol=0)
    chat = DeitaScorer()(dt.MESSAGES)
    ref_q = dt.reference(smol, [dt.QUALITY.format(instruction=x, output=y) for x, y in zip(dt.MESSAGES_X, ["4.", "Blue."])])
    np.testing.assert_allclose(chat["deita_quality"], [r[0] for r in ref_q], atol=1e-4, rtol=0)
