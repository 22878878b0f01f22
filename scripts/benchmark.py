#!/usr/bin/env python
"""Throughput of SelectITScorer against the authors' code path, same process, same model.

The reference loop follows the SelectIT authors' released code: one prompt at a time, batch
size 1, `model(input_ids).logits` (full-vocabulary logits at EVERY position), softmax over the
last position in float32, the rating-token probabilities read from it, then the same formulas.
The scorer batches rows x prompts under a token budget and computes logits at the last position
only. Both score the same rows with the same prompts; the script prints rows/s, tokens/s (real
prompt tokens, padding not counted), the speed ratio, the largest score difference, peak memory
and, on CUDA, the model-FLOPs utilisation (MFU):

    MFU = 2 x non-embedding parameters x tokens / time / peak dense FLOP/s of the device

("non-embedding" leaves out the input embedding and the output projection, which the scorer
applies at one position per prompt only.)

Examples:
    python scripts/benchmark.py --rows 64                      # embedded SmolLM2 on CPU
    python scripts/benchmark.py --random-init llama-3-8b --dtype bfloat16 --rows 256 \\
        --max-batch-tokens 32768                              # on a GPU, random weights
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "alpaca_gpt4_demo_999.json"

# Peak dense bf16 tensor-core FLOP/s (no sparsity), from the vendors' data sheets.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}

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


def build_random_model(name: str, dtype: str, out_dir: str) -> str:
    """Save a random-weight model of `name`'s shape plus the embedded tokenizer to `out_dir`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from hf_selectit.models import embedded_model_path

    if name not in RANDOM_CONFIGS:
        raise SystemExit(f"--random-init {name!r}: expected one of {sorted(RANDOM_CONFIGS)}.")
    spec = dict(RANDOM_CONFIGS[name])
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())
    # Ids of the tokenizer must index the embedding: clamp by growing the vocabulary if needed.
    spec["vocab_size"] = max(spec["vocab_size"], len(tokenizer))
    model_type = spec.pop("model_type")
    config = AutoConfig.for_model(model_type, **spec)
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    torch_dtype = {"auto": torch.bfloat16, "bfloat16": torch.bfloat16, "float16": torch.float16,
                   "float32": torch.float32}[dtype]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out_dir


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


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _slice(batch: dict[str, list], start: int, stop: int) -> dict[str, list]:
    return {k: v[start:stop] for k, v in batch.items()}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="Model id or path (default: embedded SmolLM2).")
    parser.add_argument("--random-init", default=None, metavar="CONFIG_NAME",
                        help=f"Random weights with the shape of one of {sorted(RANDOM_CONFIGS)}.")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="JSON array of Alpaca rows.")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--reference-rows", type=int, default=None,
                        help="Rows for the (slow) reference loop; default: --rows. Its rows/s "
                             "is measured on these, the score difference on their overlap.")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--max-batch-tokens", type=int, default=None,
                        help="Token budget of a micro-batch (default: the scorer's per-device default).")
    parser.add_argument("--batch-size", type=int, default=256, help="Rows per scorer call (map batch).")
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if any).")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads.")
    parser.add_argument("--peak-flops", type=float, default=None,
                        help="Peak dense FLOP/s of the device (default: table for H100/H200/A100 bf16).")
    parser.add_argument("--skip-reference", action="store_true", help="Time the scorer only.")
    parser.add_argument("--json", default=None, help="Also write the results to this JSON file.")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from hf_selectit.formulas import selectit_scores
    from hf_selectit.models import load_model_and_tokenizer, parameter_counts
    from hf_selectit.prompts import build_prompt, extract_pairs, resolve_prompts
    from hf_selectit.scorer import SelectITScorer, default_batch_tokens

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        device = "cuda:0"
    tmp = None
    model_id = args.model
    if args.random_init:
        tmp = tempfile.TemporaryDirectory(prefix="selectit-bench-")
        model_id = build_random_model(args.random_init, args.dtype, tmp.name)

    batch = load_rows(Path(args.data), args.rows)
    scorer = SelectITScorer(model_id, prompts=args.prompts, dtype=args.dtype, device=device,
                            max_batch_tokens=args.max_batch_tokens)
    # Warm-up: loads the model and tokenizer (not timed) and runs the kernels once.
    scorer(_slice(batch, 0, 2))
    # The per-process model cache hands back the very object the scorer uses: same weights.
    model, tokenizer = load_model_and_tokenizer(scorer.config, device)
    rating_ids = list(scorer.info()["rating_tokens"]["ids"])
    alpha, normalization = scorer.config.alpha, scorer.config.normalization
    prompts = resolve_prompts(args.prompts)

    pairs = extract_pairs(batch)
    texts = [[build_prompt(rp, p.instruction, p.response) for rp in prompts] for p in pairs]
    lengths = np.array([[len(tokenizer(t).input_ids) for t in row] for row in texts])

    # --- scorer ---
    with PeakMemory(device) as mem_s:
        _sync(device)
        t0 = time.perf_counter()
        outs = [scorer(_slice(batch, i, i + args.batch_size)) for i in range(0, args.rows, args.batch_size)]
        _sync(device)
        t_scorer = time.perf_counter() - t0
    prefix = scorer.config.column_prefix
    got = {k: sum((o[k] for o in outs), []) for k in outs[0]}
    status = got[f"{prefix}status"]
    n_tokens = int(lengths.sum())
    results: dict[str, Any] = {
        "model": (f"random weights, shape of {args.random_init}" if args.random_init
                  else model_id or "embedded SmolLM2-135M-Instruct"),
        "random_init": args.random_init,
        "device": device, "dtype": str(next(model.parameters()).dtype), "rows": args.rows,
        "prompts": len(prompts),
        "max_batch_tokens": args.max_batch_tokens or f"auto ({default_batch_tokens(device)})",
        "batch_size": args.batch_size, "tokens": n_tokens, "mean_prompt_tokens": float(lengths.mean()),
        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "scorer": {"seconds": t_scorer, "rows_per_s": args.rows / t_scorer,
                   "tokens_per_s": n_tokens / t_scorer, "peak_memory_bytes": mem_s.peak,
                   "status_not_ok": sum(s != "ok" for s in status)},
    }

    # --- reference ---
    if not args.skip_reference:
        n_ref = min(args.reference_rows or args.rows, args.rows)
        flat = [t for row in texts[:n_ref] for t in row]
        reference_rating_probs(model, tokenizer, flat[:1], rating_ids, device)  # warm-up
        with PeakMemory(device) as mem_r:
            _sync(device)
            t0 = time.perf_counter()
            probs = reference_rating_probs(model, tokenizer, flat, rating_ids, device)
            _sync(device)
            t_ref = time.perf_counter() - t0
        ref = selectit_scores(probs.reshape(n_ref, len(prompts), -1), alpha=alpha,
                              normalization=normalization)
        ref_tokens = int(lengths[:n_ref].sum())
        ok = np.array([s == "ok" for s in status[:n_ref]])
        sent = np.asarray(got[f"{prefix}sentence_score"][:n_ref], dtype=np.float64)
        tok = np.asarray(got[f"{prefix}token_scores"][:n_ref], dtype=np.float64)
        rp = np.asarray(got[f"{prefix}rating_probs"][:n_ref], dtype=np.float64)
        results["reference"] = {
            "rows": n_ref, "seconds": t_ref, "rows_per_s": n_ref / t_ref,
            "tokens_per_s": ref_tokens / t_ref, "peak_memory_bytes": mem_r.peak,
        }
        results["speed_ratio"] = results["scorer"]["tokens_per_s"] / results["reference"]["tokens_per_s"]
        results["compared_rows"] = int(ok.sum())
        results["max_abs_diff"] = {
            "sentence_score": float(np.abs(sent[ok] - ref["sentence_score"][ok]).max()),
            "token_scores": float(np.abs(tok[ok] - ref["token_scores"][ok]).max()),
            "rating_probs_normalized": float(np.abs(
                rp[ok] / rp[ok].sum(-1, keepdims=True)
                - probs.reshape(n_ref, len(prompts), -1)[ok] / probs.reshape(n_ref, len(prompts), -1)[ok].sum(-1, keepdims=True)
            ).max()),
        }

    # --- MFU (CUDA) ---
    n_params = parameter_counts(model)[1]
    results["non_embedding_params"] = n_params
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
        peak = args.peak_flops or next((v for k, v in PEAK_FLOPS.items() if k in name), None)
        results["gpu"] = name
        results["peak_flops"] = peak
        for phase in ("scorer", "reference"):
            if phase in results and peak:
                tps = results[phase]["tokens_per_s"]
                results[phase]["mfu"] = 2 * n_params * tps / peak
    _print(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    if tmp is not None:
        tmp.cleanup()
    return 0


def _print(r: dict) -> None:
    # A benchmark script: its output is the report.
    gib = 1024 ** 3
    print(f"model: {r['model']}  device: {r['device']} ({r.get('gpu', r['cpu'])}), dtype {r['dtype']}, "
          f"threads {r['threads']}, load avg {r['load_avg']}")
    print(f"rows {r['rows']} x prompts {r['prompts']}: {r['tokens']} prompt tokens "
          f"(mean {r['mean_prompt_tokens']:.1f}); non-embedding params {r['non_embedding_params']:,}; "
          f"max_batch_tokens {r['max_batch_tokens']}, batch_size {r['batch_size']}")
    header = f"{'':<10}{'rows':>6}{'seconds':>10}{'rows/s':>10}{'tokens/s':>11}{'peak mem GiB':>14}{'MFU':>8}"
    print(header)
    for phase in ("reference", "scorer"):
        if phase not in r:
            continue
        p = r[phase]
        mfu = f"{100 * p['mfu']:.1f}%" if "mfu" in p else "-"
        print(f"{phase:<10}{p.get('rows', r['rows']):>6}{p['seconds']:>10.2f}{p['rows_per_s']:>10.3f}"
              f"{p['tokens_per_s']:>11.1f}{p['peak_memory_bytes'] / gib:>14.2f}{mfu:>8}")
    if "speed_ratio" in r:
        d = r["max_abs_diff"]
        print(f"speed ratio (scorer / reference, tokens/s): {r['speed_ratio']:.2f}x")
        print(f"max |diff| over {r['compared_rows']} rows: sentence {d['sentence_score']:.2e}, "
              f"token {d['token_scores']:.2e}, normalised rating probs {d['rating_probs_normalized']:.2e}")
    print(f"rows not 'ok' in the scorer: {r['scorer']['status_not_ok']}")


if __name__ == "__main__":
    sys.exit(main())
