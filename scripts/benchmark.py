#!/usr/bin/env python
"""Throughput of SelectITScorer against the authors' code path, same process, same model.

The reference loop follows the SelectIT authors' released code: one prompt at a time, batch
size 1, `model(input_ids).logits` (full-vocabulary logits at EVERY position), softmax over the
last position in float32, the rating-token probabilities read from it, then the same formulas.
The scorer batches rows x prompts under a token budget and computes logits at the last position
only. The reference scores `--reference-rows` rows spread evenly over the scorer's (so their
lengths are distributed alike); the script prints rows/s, tokens/s (real prompt tokens, padding
not counted), the speed ratio, the largest score difference on the shared rows, the work ratio
(the reference's FLOPs over the scorer's: the most a compute-bound device such as a CPU core can
gain), peak memory and, on CUDA, the model-FLOPs utilisation (MFU):

    MFU = 2 x non-embedding parameters x tokens / time / peak dense FLOP/s of the device

("non-embedding" leaves out the input embedding and the output projection, which the scorer
applies at one position per prompt only.)

MFU needs the device's peak: a table of dense bf16 peaks for known GPUs (`PEAK_BF16_FLOPS`), or
`--peak-flops` (any device, the CPU included). Random-weight shapes (`--random-init`) need no
download: the model is built from a config written below, in bf16 with sdpa attention unless
told otherwise, and handed to the scorer in memory.

Examples:
    python scripts/benchmark.py --rows 64                      # embedded SmolLM2 on CPU
    python scripts/benchmark.py --method alpagasus --rows 24 --reference-rows 12 --threads 1
    python scripts/benchmark.py --method deita --rows 24 --reference-rows 12 --threads 1
    python scripts/benchmark.py --random-init tiny-llama --rows 8 --reference-rows 4 \\
        --peak-flops 1e12                                     # CPU smoke test of the GPU path
    python scripts/benchmark.py --random-init qwen2.5-0.5b --rows 1024 --reference-rows 64 \\
        --max-batch-tokens 32768,65536,131072                 # a GPU: one run per budget
    python scripts/benchmark.py --random-init llama-3-8b --rows 512 --reference-rows 32 \\
        --max-batch-tokens 16384,32768,65536
    python scripts/benchmark.py --backend vllm --rows 48 --reference-rows 8 --max-length 2047
    VLLM_CPU_KVCACHE_SPACE=1 python scripts/benchmark.py --backend vllm --rows 8 --reference-rows 2 \\
        --threads 1 --vllm-kwargs '{"enforce_eager": true}'   # vllm-cpu (make venv-vllm)
                                                              # every method: vLLM vs transformers vs batch-1

`--backend vllm` runs every method in one process on one vLLM engine (vLLM starts once, which
takes minutes on a CPU): per method the vLLM backend, the transformers engine and the batch-1
reference, in rows/s and tokens/s, with the score differences between them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "alpaca_gpt4_demo_999.json"

# Peak dense bf16 tensor-core FLOP/s (no sparsity), from the vendors' data sheets, matched in
# this order against torch.cuda.get_device_name() (so "H100 PCIe" wins over "H100").
PEAK_BF16_FLOPS: list[tuple[str, float]] = [
    ("GH200", 989e12), ("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12),
    ("B200", 2250e12), ("A100", 312e12), ("L40S", 362e12), ("L4", 121e12), ("A10", 125e12),
]

# Shapes of public models, for GPU runs where nothing can be downloaded (random weights:
# throughput does not depend on the values). Vocabulary sizes are the real ones; the embedded
# SmolLM2 tokenizer (49,152 ids) is used, so every id fits.
RANDOM_CONFIGS: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": dict(
        model_type="qwen2", architectures=["Qwen2ForCausalLM"], vocab_size=151936,
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0,
        rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu", sliding_window=None,
        use_sliding_window=False,
    ),
    "llama-3-8b": dict(
        model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=128256,
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=False, hidden_act="silu",
    ),
    # For smoke tests of the GPU path on a CPU.
    "tiny-llama": dict(
        model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=49152,
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=8192, tie_word_embeddings=True,
    ),
}


# --- peak memory ---

class PeakMemory:
    """Peak memory of one phase: CUDA max_memory_allocated, or on CPU the process RSS sampled
    every 5 ms by a thread (ru_maxrss is a lifetime maximum and cannot separate two phases)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.peak = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "PeakMemory":
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self.peak = _rss()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: Any) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --- data, model ---

def load_rows(path: Path, n: int) -> dict[str, list]:
    with open(path) as f:
        rows = json.load(f)
    if n > len(rows):
        raise SystemExit(f"--rows {n}: {path} has only {len(rows)} rows.")
    rows = rows[:n]
    return {key: [r.get(key, "") for r in rows] for key in ("instruction", "input", "output")}


def build_random_model(name: str, dtype: str, device: str, attn_implementation: Optional[str]) -> tuple:
    """A random-weight model of `name`'s shape (RANDOM_CONFIGS) on `device`, with the embedded tokenizer.

    Built directly on the device in `dtype` (no download, no files): the values do not change
    the throughput. Returns (model, tokenizer), handed to the scorer in memory.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from hf_selectit.models import embedded_model_path

    if name not in RANDOM_CONFIGS:
        raise SystemExit(f"--random-init {name!r}: expected one of {sorted(RANDOM_CONFIGS)}.")
    spec = dict(RANDOM_CONFIGS[name])
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())
    # Ids of the tokenizer must index the embedding: grow the vocabulary if it is smaller.
    spec["vocab_size"] = max(spec["vocab_size"], len(tokenizer))
    model_type = spec.pop("model_type")
    config = AutoConfig.for_model(model_type, **spec)
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.name_or_path = f"random-init/{name}"  # what provenance and the fingerprint show
    torch.manual_seed(0)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=_torch_dtype(dtype), **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def _torch_dtype(dtype: str) -> Any:
    import torch

    return {"auto": torch.bfloat16, "bfloat16": torch.bfloat16, "float16": torch.float16,
            "float32": torch.float32}[dtype]


# --- model options, MFU, budgets (the model-side half of this script) ---

def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --random-init, --dtype, --attn-implementation, --model-kwargs, --peak-flops,
    --max-batch-tokens (one budget or a comma list to sweep)."""
    parser.add_argument("--model", default=None, help="Model id or path (default: embedded SmolLM2).")
    parser.add_argument("--random-init", default=None, metavar="SHAPE", choices=sorted(RANDOM_CONFIGS),
                        help=f"Random weights with the shape of one of {sorted(RANDOM_CONFIGS)} "
                             "(no download; bf16 and sdpa unless --dtype/--attn-implementation say otherwise).")
    parser.add_argument("--dtype", default=None, choices=["auto", "float32", "bfloat16", "float16"],
                        help="Default: bfloat16 with --random-init, else auto (bf16 on CUDA, fp32 on CPU).")
    parser.add_argument("--attn-implementation", default="sdpa",
                        help="Attention kernel (model_kwargs['attn_implementation']): sdpa (default), "
                             "eager, flash_attention_2, ...")
    parser.add_argument("--model-kwargs", default=None, metavar="JSON",
                        help="More from_pretrained options as JSON, e.g. '{\"device_map\": \"auto\"}'.")
    parser.add_argument("--peak-flops", type=float, default=None,
                        help="Peak dense FLOP/s of the device for MFU (default: the table of bf16 "
                             "peaks of known GPUs; needed for any other device, the CPU included).")
    parser.add_argument("--max-batch-tokens", default=None, type=_budgets,
                        help="Token budget of a micro-batch, or a comma list to time each "
                             "(default: the scorer's per-device default).")


def _budgets(text: str) -> list:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an int or a comma list of ints") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ints >= 1")
    return values


def model_options(args: argparse.Namespace) -> tuple[str, dict]:
    """(dtype, model_kwargs) the scorer gets from the command line."""
    dtype = args.dtype or ("bfloat16" if args.random_init else "auto")
    kwargs = json.loads(args.model_kwargs) if args.model_kwargs else {}
    if args.attn_implementation:
        kwargs.setdefault("attn_implementation", args.attn_implementation)
    return dtype, kwargs


def peak_flops(device: str, override: Optional[float]) -> tuple[Optional[str], Optional[float]]:
    """(device name, peak dense bf16 FLOP/s): the override, else the table for a known GPU, else None."""
    import torch

    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None
    if override:
        return name, override
    if name is None:
        return None, None
    return name, next((v for key, v in PEAK_BF16_FLOPS if key in name), None)


def add_mfu(results: dict, model: Any, device: str, override: Optional[float]) -> None:
    """MFU of every timed phase: 2 x parameters x tokens/s / peak FLOP/s.

    The parameter count leaves out the input embedding and the output head (the scorer applies
    the head at one position per text); `mfu_all_params` counts every parameter.
    """
    from hf_selectit.models import parameter_counts

    total, non_embedding = parameter_counts(model)
    results["params"] = total
    results["non_embedding_params"] = non_embedding
    name, peak = peak_flops(device, override)
    if name:
        results["gpu"] = name
    results["peak_flops"] = peak
    if not peak:
        return
    for phase in _phases(results):
        tps = phase["tokens_per_s"]
        phase["mfu"] = 2 * non_embedding * tps / peak
        phase["mfu_all_params"] = 2 * total * tps / peak


# Selective Alpaca (SelectIT's recipe): Alpaca-GPT4's 52,002 rows x 5 rating prompts. Prompt tokens
# counted with the embedded SmolLM2 tokenizer on alpaca_gpt4_demo_999.json (a sample of the same
# data): 1,102,907 tokens for 999 rows, i.e. 1104.0 per row, scaled to 52,002 rows. Llama-2's own
# tokenizer gives other counts (not measured here).
ALPACA_ROWS = 52_002
ALPACA_TOKENS_PER_ROW = 1104.0
# Non-embedding parameters (all parameters minus the input embedding and the untied output head).
LLAMA2_NON_EMBEDDING = {"Llama-2-7b": 6_476_271_616, "Llama-2-13b": 12_688_184_320,
                        "Llama-2-70b": 68_452_360_192}


def selective_alpaca_plan(results: dict) -> list:
    """Hours per Selective Alpaca scoring step, scaled from this run's best tokens/s by FLOPs.

    Assumes each Llama-2 model reaches the MFU measured here (time ~ non-embedding parameters x
    tokens); the 70B model sharded by device_map runs one GPU at a time, so it gets one GPU's speed.
    """
    tokens = ALPACA_ROWS * ALPACA_TOKENS_PER_ROW
    flops_per_s = 2 * results["non_embedding_params"] * results["scorer"]["tokens_per_s"]
    return [(name, tokens / (flops_per_s / (2 * n)) / 3600) for name, n in LLAMA2_NON_EMBEDDING.items()]


def _phases(results: dict) -> list:
    return [results[k] for k in ("reference", "scorer") if k in results] + list(results.get("sweep", []))


# --- the reference loop (the authors' code path) ---

def reference_rating_probs(model: Any, tokenizer: Any, texts: list[str], rating_ids: list[int],
                           device: str) -> "Any":
    """[len(texts), 5] full-vocabulary probabilities of the rating tokens, one prompt at a time."""
    import numpy as np
    import torch

    out = np.empty((len(texts), len(rating_ids)), dtype=np.float64)
    index = torch.tensor(rating_ids, device=device)
    with torch.no_grad():
        for i, text in enumerate(texts):
            input_ids = tokenizer(text, return_tensors="pt").input_ids.to(device)
            logits = model(input_ids).logits  # [1, L, V]: every position, as the authors did
            probs = torch.softmax(logits[0, -1, :].float(), dim=-1)
            out[i] = probs[index].double().cpu().numpy()
    return out


# --- one benchmark per method: scorer, work (tokens), batch-1 reference, comparison ---

class MethodBench:
    """What differs between methods; `--method NAME` picks one from `METHOD_BENCHES`.

    A method says how to build its scorer, how many tokens each row costs (the texts it runs,
    padding not counted), how the authors' code path computes the same numbers one text at a
    time with full logits (`reference`), and which output columns to compare.
    """

    name = ""

    def make_scorer(self, args: argparse.Namespace, **options: Any) -> Any:
        raise NotImplementedError

    def row_lengths(self, scorer: Any, batch: dict, tokenizer: Any) -> "Any":
        """[rows, texts per row] token counts of what the scorer runs."""
        raise NotImplementedError

    def reference(self, scorer: Any, model: Any, tokenizer: Any, batch: dict, device: str) -> dict:
        """The authors' computation for every row of `batch`: output column -> list."""
        raise NotImplementedError

    def compare(self, scorer: Any, got: dict, ref: dict, n_ref: int) -> tuple[int, dict]:
        """(rows compared, column -> max |scorer - reference| over rows 'ok' in both)."""
        import numpy as np

        prefix = scorer.config.column_prefix
        ok = np.array([s == "ok" for s in got[prefix + "status"][:n_ref]])
        diffs = {}
        for column in self.compared:
            a = np.asarray(got[prefix + column][:n_ref], dtype=np.float64)[ok]
            b = np.asarray(ref[column], dtype=np.float64)[ok]
            diffs[column] = float(np.abs(a - b).max()) if ok.any() else float("nan")
        return int(ok.sum()), diffs

    compared: tuple = ()


class SelectITBench(MethodBench):
    """SelectIT: the authors' loop, one prompt at a time, `model(input_ids).logits` at every position."""

    name = "selectit"
    compared = ("sentence_score", "token_scores", "rating_probs_normalized")

    def make_scorer(self, args: argparse.Namespace, **options: Any) -> Any:
        from hf_selectit.config import ScorerConfig
        from hf_selectit.scorer import SelectITScorer

        if "tokenizer" in options:  # a model in memory
            return SelectITScorer(prompts=args.prompts, **options)
        return SelectITScorer.from_config(ScorerConfig(prompts=args.prompts, **options))

    def _texts(self, scorer: Any, batch: dict) -> list:
        from hf_selectit.prompts import build_prompt, extract_pairs

        return [[build_prompt(rp, p.instruction, p.response) for rp in scorer.prompt_texts]
                for p in extract_pairs(batch)]

    def row_lengths(self, scorer: Any, batch: dict, tokenizer: Any) -> "Any":
        import numpy as np

        return np.array([[len(tokenizer(t).input_ids) for t in row] for row in self._texts(scorer, batch)])

    def reference(self, scorer: Any, model: Any, tokenizer: Any, batch: dict, device: str) -> dict:
        from hf_selectit.formulas import selectit_scores

        texts = self._texts(scorer, batch)
        rating_ids = list(scorer.info()["rating_tokens"]["ids"])
        flat = [t for row in texts for t in row]
        probs = reference_rating_probs(model, tokenizer, flat, rating_ids, device)
        probs = probs.reshape(len(texts), len(scorer.prompt_texts), -1)
        out = selectit_scores(probs, alpha=scorer.config.alpha, normalization=scorer.config.normalization)
        return {"sentence_score": out["sentence_score"], "token_scores": out["token_scores"],
                "rating_probs_normalized": probs / probs.sum(-1, keepdims=True)}

    def compare(self, scorer: Any, got: dict, ref: dict, n_ref: int) -> tuple[int, dict]:
        import numpy as np

        prefix = scorer.config.column_prefix
        rp = np.asarray(got[prefix + "rating_probs"][:n_ref], dtype=np.float64)
        got = dict(got)
        got[prefix + "rating_probs_normalized"] = list(rp / rp.sum(-1, keepdims=True))
        return super().compare(scorer, got, ref, n_ref)


class IFDBench(MethodBench):
    """IFD: the authors' loop (Cherry LLM cherry_seletion/data_analysis.py, get_perplexity_and_
    embedding_part_text), one text at a time on the same token ids the scorer runs:
    `model(input_ids, labels=labels, output_hidden_states=True)` (Cherry loads the model with
    output_hidden_states=True) with full-vocabulary logits at every position, labels -100 before
    the response, transformers' own loss, then Cherry's per-position token-loss list
    (log_softmax of logits[i-1] for every position)."""

    token_loss_list = True  # Cherry's per-token losses; Reflection-Tuning's script has none

    name = "ifd"
    compared = ("score", "conditioned_loss", "direct_loss")

    def scorer_class(self) -> Any:
        from hf_selectit import IFDScorer

        return IFDScorer

    def make_scorer(self, args: argparse.Namespace, **options: Any) -> Any:
        if args.max_length:
            options["max_length"] = args.max_length
        return self.scorer_class()(preset=args.preset, **options)

    def row_lengths(self, scorer: Any, batch: dict, tokenizer: Any) -> "Any":
        import numpy as np

        return np.array([[len(e[0]), len(e[1])] if e else [0, 0] for e in scorer.token_ids(batch)])

    def reference(self, scorer: Any, model: Any, tokenizer: Any, batch: dict, device: str) -> dict:
        import math

        import torch

        out: dict = {"score": [], "conditioned_loss": [], "direct_loss": []}
        with torch.no_grad():
            for entry in scorer.token_ids(batch):
                if entry is None:
                    for v in out.values():
                        v.append(float("nan"))
                    continue
                losses = []
                for ids, start in zip(entry[:2], entry[2]):
                    input_ids = torch.tensor([ids], device=device)
                    labels = input_ids.clone()
                    labels[0, :start] = -100
                    outputs = model(input_ids, labels=labels, output_hidden_states=True)
                    losses.append(float(outputs.loss))
                    if self.token_loss_list:
                        logits = outputs.logits
                        _ = [float(torch.nn.functional.nll_loss(
                            torch.log_softmax(logits[0, i - 1], dim=-1).unsqueeze(0), input_ids[0, i].unsqueeze(0)))
                            for i in range(1, input_ids.shape[1])]
                cond, alone = losses
                out["conditioned_loss"].append(cond)
                out["direct_loss"].append(alone)
                out["score"].append(math.exp(cond) / math.exp(alone) if scorer.config.variant == "ppl"
                                    else cond / alone)
        return out


class ReverseIFDBench(IFDBench):
    """r-IFD: Reflection-Tuning's selection_code/data_analysis.py, `model(input_ids, labels=labels)`
    per text with output_hidden_states=True, no token-loss list."""

    name = "rifd"
    token_loss_list = False

    def scorer_class(self) -> Any:
        from hf_selectit import ReverseIFDScorer

        return ReverseIFDScorer


class AlpaGasusBench(MethodBench):
    """AlpaGasus with a local judge, the authors' two messages one row at a time: the chat
    template's token ids, `model(input_ids).logits` at every position, softmax over the last,
    the six digits renormalised."""

    name = "alpagasus"
    compared = ("score", "rating_mass")

    def make_scorer(self, args: argparse.Namespace, **options: Any) -> Any:
        from hf_selectit import AlpaGasusScorer

        return AlpaGasusScorer(**options)

    def _ids(self, batch: dict, tokenizer: Any) -> list:
        from hf_selectit.methods.alpagasus import messages
        from hf_selectit.prompts import extract_fields

        out = []
        for f in extract_fields(batch):
            if f.error is not None:
                out.append(None)
                continue
            text = tokenizer.apply_chat_template(messages(f.instruction, f.input, f.response), tokenize=False,
                                                 add_generation_prompt=True)
            out.append(tokenizer(text, add_special_tokens=False).input_ids)
        return out

    def row_lengths(self, scorer: Any, batch: dict, tokenizer: Any) -> "Any":
        import numpy as np

        return np.array([[len(ids) if ids else 0] for ids in self._ids(batch, tokenizer)])

    def reference(self, scorer: Any, model: Any, tokenizer: Any, batch: dict, device: str) -> dict:
        import torch

        digits = list(scorer.info()["rating_tokens"]["ids"])
        out: dict = {"score": [], "rating_mass": []}
        with torch.no_grad():
            for ids in self._ids(batch, tokenizer):
                if ids is None:
                    out["score"].append(float("nan"))
                    out["rating_mass"].append(float("nan"))
                    continue
                logits = model(torch.tensor([ids], device=device)).logits  # every position
                p = torch.softmax(logits[0, -1, :].float(), dim=-1)[digits].double().cpu()
                out["rating_mass"].append(float(p.sum()))
                out["score"].append(float((p / p.sum() * torch.arange(6, dtype=torch.float64)).sum()))
        return out


class DeitaBench(MethodBench):
    """DEITA's `Scorer.infer_score`, one prompt at a time: `tokenizer.encode`, `model.generate(...,
    max_new_tokens=2, output_scores=True)`, softmax over the first step's logits of "1".."6"."""

    name = "deita"
    compared = ("quality", "complexity", "score")

    def make_scorer(self, args: argparse.Namespace, **options: Any) -> Any:
        from hf_selectit import DeitaScorer

        return DeitaScorer(kind="both", **options)

    def _texts(self, batch: dict) -> list:
        from hf_selectit.methods.deita import complexity_prompt, quality_prompt
        from hf_selectit.prompts import extract_pairs

        return [None if p.error is not None else
                [quality_prompt(p.instruction, p.response), complexity_prompt(p.instruction)]
                for p in extract_pairs(batch)]

    def row_lengths(self, scorer: Any, batch: dict, tokenizer: Any) -> "Any":
        import numpy as np

        return np.array([[len(tokenizer(t).input_ids) for t in row] if row else [0, 0]
                         for row in self._texts(batch)])

    def reference(self, scorer: Any, model: Any, tokenizer: Any, batch: dict, device: str) -> dict:
        import numpy as np
        import torch

        ids6 = list(scorer.info()["rating_tokens"]["ids"])
        out: dict = {"quality": [], "complexity": [], "score": []}
        with torch.no_grad():
            for row in self._texts(batch):
                if row is None:
                    for v in out.values():
                        v.append(float("nan"))
                    continue
                values = []
                for text in row:
                    input_ids = tokenizer.encode(text, return_tensors="pt").to(device)
                    gen = model.generate(input_ids, max_new_tokens=2, num_return_sequences=1, do_sample=False,
                                         return_dict_in_generate=True, output_scores=True,
                                         pad_token_id=tokenizer.pad_token_id)
                    logits = gen.scores[0][0].double().cpu().numpy()[ids6]
                    e = np.exp(logits - logits.max())
                    values.append(float((e / e.sum() * np.arange(1, 7)).sum()))
                out["quality"].append(values[0])
                out["complexity"].append(values[1])
                out["score"].append(values[0] * values[1])
        return out


#: --method NAME -> its benchmark. Other methods register here.
METHOD_BENCHES: dict = {b.name: b for b in (SelectITBench(), IFDBench(), ReverseIFDBench(), AlpaGasusBench(),
                                                    DeitaBench())}


def memory_by_length(bench: MethodBench, scorer: Any, model: Any, tokenizer: Any, batch: dict,
                     lengths: "Any", device: str, *, bins: int = 4, rows_per_bin: int = 4,
                     reference: bool = True) -> list:
    """Peak memory of the scorer (on up to `rows_per_bin` rows) and of the reference (on the
    longest row) for rows grouped by their token count into `bins` quantile bins."""
    import numpy as np

    per_row = lengths.sum(axis=1)
    order = np.argsort(per_row, kind="stable")
    out = []
    for part in np.array_split(order, bins):
        if not len(part):
            continue
        pick = part[-rows_per_bin:]
        sub = {k: [v[i] for i in pick] for k, v in batch.items()}
        with PeakMemory(device) as mem_s:
            scorer(sub)
        entry = {"row_tokens_min": int(per_row[part].min()), "row_tokens_max": int(per_row[part].max()),
                 "rows": int(len(pick)), "scorer_peak_bytes": mem_s.peak}
        if reference:
            longest = {k: [v[int(part[-1])]] for k, v in batch.items()}
            with PeakMemory(device) as mem_r:
                bench.reference(scorer, model, tokenizer, longest, device)
            entry["reference_peak_bytes"] = mem_r.peak
        out.append(entry)
    return out


def spread(rows: int, n: int) -> list:
    """`n` row indices spread evenly over `range(rows)` (the first and the last included).

    Example:
        >>> spread(24, 4)
        [0, 8, 15, 23]
    """
    if n >= rows:
        return list(range(rows))
    if n == 1:
        return [0]
    return sorted({round(i * (rows - 1) / (n - 1)) for i in range(n)})


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _slice(batch: dict[str, list], start: int, stop: int) -> dict[str, list]:
    return {k: v[start:stop] for k, v in batch.items()}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="JSON array of Alpaca rows.")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--reference-rows", type=int, default=None,
                        help="Rows for the (slow) reference loop; default: --rows. Its rows/s "
                             "is measured on these, the score difference on their overlap.")
    parser.add_argument("--batch-size", type=int, default=256, help="Rows per scorer call (map batch).")
    parser.add_argument("--method", default="selectit", choices=sorted(METHOD_BENCHES),
                        help="Scoring method to time against its authors' batch-1 code path.")
    parser.add_argument("--prompts", type=int, default=5, help="SelectIT: rating prompts.")
    parser.add_argument("--preset", default=None, choices=["cherry", "superfiltering", "reflection"],
                        help="IFD / r-IFD: a paper's template, direct prefix and variant.")
    parser.add_argument("--max-length", type=int, default=None, help="IFD / r-IFD: right cut in tokens.")
    parser.add_argument("--no-memory-by-length", action="store_true",
                        help="Skip the peak memory per row-length bin.")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if any).")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads.")
    parser.add_argument("--skip-reference", action="store_true", help="Time the scorer only.")
    parser.add_argument("--json", default=None, help="Also write the results to this JSON file.")
    parser.add_argument("--backend", default="transformers", choices=["transformers", "vllm"],
                        help="vllm: every method on the vLLM backend against the transformers engine "
                             "and the batch-1 reference, in one run (needs vllm).")
    parser.add_argument("--vllm-kwargs", default=None, metavar="JSON",
                        help='--backend vllm: keyword arguments of vllm.LLM, e.g. \'{"enforce_eager": true}\' '
                             "(skips torch.compile, minutes on a CPU) or '{\"tensor_parallel_size\": 4}'.")
    args = parser.parse_args(argv)
    if args.vllm_kwargs is not None and args.backend != "vllm":
        parser.error("--vllm-kwargs applies with --backend vllm only.")
    if args.backend == "vllm":
        if args.threads:  # the transformers engine and the reference; vLLM sets its own threads
            import torch

            torch.set_num_threads(args.threads)
        return compare_backends(args)

    import numpy as np
    import torch

    from hf_selectit.engine import default_batch_tokens
    from hf_selectit.models import load_model_and_tokenizer

    bench = METHOD_BENCHES[args.method]

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        device = "cuda:0"
    dtype, model_kwargs = model_options(args)
    model_id = args.model
    built = None
    if args.random_init:
        if set(model_kwargs) - {"attn_implementation"}:
            raise SystemExit("--random-init builds the model in memory on --device: only "
                             "attn_implementation applies from --model-kwargs.")
        # Handed to the scorer in memory (nothing written to disk, even for 8B).
        built = build_random_model(args.random_init, dtype, device, model_kwargs.get("attn_implementation"))

    def make_scorer(budget: Optional[int]) -> Any:
        if built is not None:  # random weights, handed over in memory
            return bench.make_scorer(args, model=built[0], tokenizer=built[1], max_batch_tokens=budget)
        return bench.make_scorer(args, model=model_id, dtype=dtype, device=device, max_batch_tokens=budget,
                                 model_kwargs=model_kwargs or None)

    batch = load_rows(Path(args.data), args.rows)
    budgets = args.max_batch_tokens or [None]
    scorer = make_scorer(budgets[0])
    # Warm-up: loads the model and tokenizer (not timed) and runs the kernels once.
    scorer(_slice(batch, 0, 2))
    # The per-process model cache (or the model in memory) is the very object the scorer uses.
    model, tokenizer = built if built is not None else load_model_and_tokenizer(scorer.config, device)
    device = str(scorer.engine.state().device)  # inputs of the reference go where the scorer's go
    lengths = bench.row_lengths(scorer, batch, tokenizer)
    n_tokens = int(lengths.sum())

    # --- scorer, once per budget ---
    sweep = []
    got: dict = {}
    for i, budget in enumerate(budgets):
        if i:
            scorer = make_scorer(budget)
            scorer(_slice(batch, 0, 2))  # warm-up of this budget's shapes
        run, out = time_scorer(scorer, batch, args.batch_size, device)
        run["max_batch_tokens"] = budget or f"auto ({default_batch_tokens(device)})"
        run["tokens_per_s"] = n_tokens / run["seconds"]
        sweep.append(run)
        if run["tokens_per_s"] >= max(r["tokens_per_s"] for r in sweep):
            got = out
    best = max(sweep, key=lambda r: r["tokens_per_s"])
    prefix = scorer.config.column_prefix
    status = got[f"{prefix}status"]
    results: dict[str, Any] = {
        "model": (f"random weights, shape of {args.random_init}" if args.random_init
                  else model_id or "embedded SmolLM2-135M-Instruct"),
        "random_init": args.random_init, "model_kwargs": model_kwargs,
        "method": args.method, "options": scorer.info()["options"],
        "device": device, "dtype": str(next(model.parameters()).dtype), "rows": args.rows,
        "prompts": int(lengths.shape[1]),
        "max_batch_tokens": best["max_batch_tokens"],
        "batch_size": args.batch_size, "tokens": n_tokens, "mean_prompt_tokens": float(lengths.mean()),
        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "scorer": dict(best, status_not_ok=sum(s != "ok" for s in status)),
    }
    if len(sweep) > 1:
        results["sweep"] = sweep

    # --- reference ---
    if not args.skip_reference:
        n_ref = min(args.reference_rows or args.rows, args.rows)
        # Rows spread evenly over the scored ones, so that their lengths (and the tokens/s that
        # depend on them) are distributed like the scorer's; the first rows alone can be shorter.
        picks = spread(args.rows, n_ref)
        ref_batch = {k: [v[i] for i in picks] for k, v in batch.items()}
        bench.reference(scorer, model, tokenizer, _slice(batch, 0, 1), device)  # warm-up
        with PeakMemory(device) as mem_r:
            _sync(device)
            t0 = time.perf_counter()
            ref = bench.reference(scorer, model, tokenizer, ref_batch, device)
            _sync(device)
            t_ref = time.perf_counter() - t0
        ref_tokens = int(lengths[picks].sum())
        results["reference"] = {
            "rows": n_ref, "seconds": t_ref, "rows_per_s": n_ref / t_ref,
            "tokens_per_s": ref_tokens / t_ref, "peak_memory_bytes": mem_r.peak,
        }
        results["speed_ratio"] = results["scorer"]["tokens_per_s"] / results["reference"]["tokens_per_s"]
        got_picked = {k: [v[i] for i in picks] for k, v in got.items()}
        results["compared_rows"], results["max_abs_diff"] = bench.compare(scorer, got_picked, ref, n_ref)
    if not args.no_memory_by_length:
        results["memory_by_length"] = memory_by_length(bench, scorer, model, tokenizer, batch, lengths, device,
                                                       reference=not args.skip_reference)

    add_mfu(results, model, device, args.peak_flops)
    add_work_ratio(results, model)
    results["selective_alpaca_hours"] = dict(selective_alpaca_plan(results))
    _print(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


def compare_backends(args: argparse.Namespace) -> int:
    """`--backend vllm`: per method, vLLM vs the transformers engine vs the batch-1 reference.

    Every scorer gets the same model, dtype and max_length, so the vLLM scorers of all methods
    share one engine (`backends.vllm.shared_llm`); its start-up is timed apart.
    """
    import numpy as np

    from hf_selectit.models import embedded_model_path, load_model_and_tokenizer

    dtype, _ = model_options(args)
    vllm_kwargs = json.loads(args.vllm_kwargs) if args.vllm_kwargs else None
    model = args.model or embedded_model_path()  # vLLM loads a folder or Hub id
    max_length = args.max_length or 2047
    batch = load_rows(Path(args.data), args.rows)
    picks = spread(args.rows, min(args.reference_rows or args.rows, args.rows))
    ref_batch = {k: [v[i] for i in picks] for k, v in batch.items()}
    results: dict[str, Any] = {"model": model, "dtype": dtype, "rows": args.rows, "reference_rows": len(picks),
                               "max_length": max_length, "load_avg": os.getloadavg(), "methods": {}}
    for name in ("selectit", "ifd", "rifd", "alpagasus", "deita"):
        bench = METHOD_BENCHES[name]
        options = dict(model=model, dtype=dtype, max_length=max_length)
        plain = bench.make_scorer(args, **options)
        served = bench.make_scorer(args, **options, backend="vllm", vllm_kwargs=vllm_kwargs)
        t0 = time.perf_counter()
        served(_slice(batch, 0, 2))  # warm-up; the first method also starts vLLM
        if "vllm_startup_s" not in results:
            results["vllm_startup_s"] = time.perf_counter() - t0
        plain(_slice(batch, 0, 2))
        loaded, tokenizer = load_model_and_tokenizer(plain.config, str(plain.engine.state().device))
        device = str(plain.engine.state().device)
        lengths = bench.row_lengths(plain, batch, tokenizer)
        n_tokens = int(lengths.sum())
        entry: dict[str, Any] = {"tokens": n_tokens}
        outs = {}
        for label, scorer in (("vllm", served), ("transformers", plain)):
            run, outs[label] = time_scorer(scorer, batch, args.batch_size, device)
            entry[label] = {"seconds": run["seconds"], "rows_per_s": run["rows_per_s"],
                            "tokens_per_s": n_tokens / run["seconds"]}
        t0 = time.perf_counter()
        ref = bench.reference(plain, loaded, tokenizer, ref_batch, device)
        seconds = time.perf_counter() - t0
        entry["reference"] = {"seconds": seconds, "rows_per_s": len(picks) / seconds,
                              "tokens_per_s": int(lengths[picks].sum()) / seconds}
        prefix = plain.config.column_prefix
        diffs = []
        for column in bench.compared:
            if prefix + column in outs["vllm"]:
                a, b = (np.asarray(outs[k][prefix + column], dtype=np.float64) for k in ("vllm", "transformers"))
                diffs.append(np.abs(a - b)[np.isfinite(a) & np.isfinite(b)].ravel())
        every = np.concatenate(diffs)
        entry["vllm_vs_transformers"] = {"max": float(every.max()), "median": float(np.median(every))}
        for label in ("vllm", "transformers"):
            picked = {k: [v[i] for i in picks] for k, v in outs[label].items()}
            entry[f"{label}_vs_reference_max"] = max(bench.compare(plain, picked, ref, len(picks))[1].values())
        entry["status_differs"] = sum(x != y for x, y in zip(outs["vllm"][prefix + "status"],
                                                             outs["transformers"][prefix + "status"]))
        results["methods"][name] = entry
    _print_backends(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


def _print_backends(r: dict) -> None:
    # A benchmark script: its output is the report.
    print(f"model: {r['model']}, dtype {r['dtype']}, {r['rows']} rows ({r['reference_rows']} for the "
          f"reference), max_length {r['max_length']}, load avg {r['load_avg']}; vLLM start-up "
          f"{r['vllm_startup_s']:.0f} s")
    print(f"{'method':<11}{'engine':<14}{'rows/s':>9}{'tokens/s':>10}{'max|d| vs tf':>14}"
          f"{'median':>10}{'max|d| vs ref':>15}")
    for name, m in r["methods"].items():
        for label in ("vllm", "transformers", "reference"):
            p = m[label]
            vs_tf = (f"{m['vllm_vs_transformers']['max']:>14.2e}{m['vllm_vs_transformers']['median']:>10.2e}"
                     if label == "vllm" else f"{'':>24}")
            vs_ref = f"{m[label + '_vs_reference_max']:>15.2e}" if label != "reference" else ""
            print(f"{name:<11}{label:<14}{p['rows_per_s']:>9.3f}{p['tokens_per_s']:>10.1f}{vs_tf}{vs_ref}")
        if m["status_differs"]:
            print(f"{name:<11}rows whose status differs between the backends: {m['status_differs']}")


def time_scorer(scorer: Any, batch: dict, batch_size: int, device: str) -> tuple[dict, dict]:
    """Score every row of `batch` in map-sized calls; (timing and peak memory, the output columns)."""
    import dataclasses

    rows = len(next(iter(batch.values())))
    before = dataclasses.asdict(scorer.engine.stats)
    with PeakMemory(device) as mem:
        _sync(device)
        t0 = time.perf_counter()
        outs = [scorer(_slice(batch, i, i + batch_size)) for i in range(0, rows, batch_size)]
        _sync(device)
        seconds = time.perf_counter() - t0
    out = {k: sum((o[k] for o in outs), []) for k in outs[0]}
    after = dataclasses.asdict(scorer.engine.stats)
    work = {k: after[k] - before[k] for k in ("tokens", "padded_tokens", "head_positions")}
    return {"seconds": seconds, "rows_per_s": rows / seconds, "peak_memory_bytes": mem.peak, "work": work}, out


def add_work_ratio(results: dict, model: Any) -> None:
    """The FLOPs of the batch-1 reference over the FLOPs the scorer ran, attention left out.

    Reference: every token of every text through the body and the output head (full logits at
    every position). Scorer: what the engine counted: rows x padded length through the body
    (shared prefixes once, not counted), the head on the positions it read. On a device that is
    compute-bound at batch size 1 (a CPU core) the speed ratio cannot exceed this figure; only
    less work helps there, not larger batches.
    """
    from hf_selectit.models import parameter_counts

    _, body = parameter_counts(model)
    head = model.get_output_embeddings().weight.numel()
    work = results["scorer"]["work"]
    scorer_flops = 2 * body * work["padded_tokens"] + 2 * head * work["head_positions"]
    reference_flops = 2 * (body + head) * results["tokens"]
    results["work_ratio"] = reference_flops / scorer_flops if scorer_flops else float("nan")
    results["padding_fraction"] = 1 - work["tokens"] / work["padded_tokens"] if work["padded_tokens"] else 0.0


def _print(r: dict) -> None:
    # A benchmark script: its output is the report.
    gib = 1024 ** 3
    print(f"model: {r['model']}  device: {r['device']} ({r.get('gpu', r['cpu'])}), dtype {r['dtype']}, "
          f"threads {r['threads']}, load avg {r['load_avg']}")
    print(f"method {r['method']}, options {r['options']}")
    print(f"rows {r['rows']} x texts {r['prompts']}: {r['tokens']} prompt tokens "
          f"(mean {r['mean_prompt_tokens']:.1f}); best max_batch_tokens {r['max_batch_tokens']}, "
          f"batch_size {r['batch_size']}")
    peak = f"{r['peak_flops']:.3g} FLOP/s" if r.get("peak_flops") else "unknown (pass --peak-flops)"
    print(f"params {r['params']:,} (MFU counts the {r['non_embedding_params']:,} outside the embeddings "
          f"and head); peak {peak}; model_kwargs {r['model_kwargs']}")
    header = (f"{'':<18}{'rows':>6}{'seconds':>10}{'rows/s':>10}{'tokens/s':>11}{'peak mem GiB':>14}"
              f"{'MFU':>8}{'MFU all':>9}")
    print(header)
    lines = [("reference", r["reference"])] if "reference" in r else []
    runs = r.get("sweep") or [r["scorer"]]
    lines += [(f"scorer@{p['max_batch_tokens']}", p) for p in runs]
    for label, p in lines:
        mfu = f"{100 * p['mfu']:.1f}%" if "mfu" in p else "-"
        mfu_all = f"{100 * p['mfu_all_params']:.1f}%" if "mfu_all_params" in p else "-"
        print(f"{label:<18}{p.get('rows', r['rows']):>6}{p['seconds']:>10.2f}{p['rows_per_s']:>10.3f}"
              f"{p['tokens_per_s']:>11.1f}{p['peak_memory_bytes'] / gib:>14.2f}{mfu:>8}{mfu_all:>9}")
    if "speed_ratio" in r:
        print(f"speed ratio (best scorer / batch-1 reference, tokens/s): {r['speed_ratio']:.2f}x")
    if "work_ratio" in r:
        print(f"work ratio (reference FLOPs / scorer FLOPs, body + output head, attention left out): "
              f"{r['work_ratio']:.2f}x; padding {100 * r['padding_fraction']:.1f}% of the scorer's tokens. "
              "Where one text at a time already keeps the device busy (a CPU core), the speed ratio "
              "cannot exceed the work ratio.")
    if "speed_ratio" in r:
        print(f"max |diff| over {r['compared_rows']} rows: "
              + ", ".join(f"{name} {value:.2e}" for name, value in r["max_abs_diff"].items()))
    print(f"rows not 'ok' in the scorer: {r['scorer']['status_not_ok']}")
    if r.get("memory_by_length"):
        print("peak memory by row length (tokens of all texts of a row; scorer on up to 4 rows of the bin, "
              "reference on its longest row):")
        for m in r["memory_by_length"]:
            ref = f"{m['reference_peak_bytes'] / gib:.2f}" if "reference_peak_bytes" in m else "-"
            print(f"  {m['row_tokens_min']:>6}-{m['row_tokens_max']:<6} scorer {m['scorer_peak_bytes'] / gib:.2f} GiB"
                  f"   reference {ref} GiB")
    if r["non_embedding_params"] >= 1e8:  # a smoke-test shape says nothing about 7B+ models
        plan = ", ".join(f"{name} {hours:.2f} h" for name, hours in selective_alpaca_plan(r))
        print(f"Selective Alpaca at this MFU (FLOP-scaled estimate, one device, "
              f"{ALPACA_ROWS * ALPACA_TOKENS_PER_ROW / 1e6:.1f}M prompt tokens): {plan}")


if __name__ == "__main__":
    sys.exit(main())
