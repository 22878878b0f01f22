#!/usr/bin/env python
"""Does training on the selected subset beat training on a random subset of the same size?

The check the SelectIT paper makes at scale, at smoke scale: fine-tune the scoring model (the
embedded SmolLM2-135M-Instruct by default) with TRL's `SFTTrainer` for a fixed number of steps on

  1. the subset SelectIT selects from the training pool (top `--ratio` by
     `selectit_sentence_score`), and, separately,
  2. a random subset of the same size (`select_random`, same `--seed`),

with the same seed, steps and hyper-parameters, then report for each (and for the model before
fine-tuning):

- the loss (mean negative log-likelihood per answer token) on a held-out split;
- the pairwise accuracy on held-out preference pairs, two ways: the answer's mean token
  log-likelihood under the fine-tuned model, and the fine-tuned model's own SelectIT rating
  (`hf_selectit.validate`); each with a bootstrap 95% interval.

Data. `--data demo` (default) is the package's 61 labelled demo rows (27 good; wrong,
off-topic, truncated, refusing answers). A share `--heldout` of the GOOD rows is held out for
evaluation; every other row is the training pool, so the selector has bad rows to avoid.
Held-out pairs: for each held-out good row, its answer against (a) the answer of another
held-out row (off-topic) and (b) its own first 40% (truncated), unless `--pairs FILE` gives real
preference pairs (prompt/chosen/rejected, ShareGPT or messages layout). With `--data FILE` (any
JSON/JSONL/Parquet the scorer reads) and no label column the held-out split is random.

On 2 CPU cores the default run takes a few minutes and is a smoke check: tens of rows and steps
cannot show the paper's effect with any confidence (the intervals say so). On a GPU, scale with
flags, e.g.

    python scripts/downstream_check.py --data ../shared/data/alpaca_gpt4_demo_999.json \\
        --pairs pairs.jsonl --steps 500 --batch-size 16 --device cuda --dtype bfloat16

Needs TRL, which only this script uses (1.16 is the version checked; it needs transformers
>= 4.56.2 and datasets >= 4.7): `pip install "trl>=1.16"`. On a machine with several GPUs,
pick one with CUDA_VISIBLE_DEVICES (the Trainer would otherwise spread over all of them).

Examples:
    python scripts/downstream_check.py                         # demo set, embedded model, CPU
    python scripts/downstream_check.py --steps 20 --json out.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import numpy as np

logger = logging.getLogger("downstream_check")


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="demo", help="'demo' (the bundled labelled set) or a data file.")
    p.add_argument("--model", default=None, help="Model id or path; default: the embedded SmolLM2-135M.")
    p.add_argument("--label", default="kind", help="Label column (if present): held-out rows are "
                   "taken from its --positive rows.")
    p.add_argument("--positive", default="good", help="Label value of a good row.")
    p.add_argument("--heldout", type=float, default=0.3, help="Share held out (of the good rows "
                   "when labelled, else of all rows).")
    p.add_argument("--pairs", default=None, help="Held-out preference pairs file; default: built "
                   "from the held-out rows (off-topic and truncated answers).")
    p.add_argument("--ratio", type=float, default=0.2, help="SelectIT selection ratio (paper: 0.2).")
    p.add_argument("--prompts", type=int, default=5, help="Rating prompts of the selection scorer.")
    p.add_argument("--steps", type=int, default=30, help="Optimiser steps per fine-tuning run.")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--max-length", type=int, default=384, help="Tokens per training example.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...; default: cuda if present.")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="Training precision (bfloat16: mixed precision, on a GPU).")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--no-self-rating", action="store_true",
                   help="Skip the fine-tuned models' SelectIT rating of the pairs.")
    p.add_argument("--threads", type=int, default=None, help="torch threads on CPU.")
    p.add_argument("--json", default=None, help="Write the figures to this JSON file.")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------- data


def load_rows(data: str):
    from datasets import load_dataset

    if data == "demo":
        data = str(resources.files("hf_selectit") / "data" / "demo.jsonl")
    suffix = Path(data).suffix.lower()
    kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(suffix)
    if kind is None:
        raise SystemExit(f"--data {data!r}: expected 'demo' or a .json/.jsonl/.parquet/.csv file.")
    return load_dataset(kind, data_files=data, split="train")


def split_rows(ds, args) -> tuple[Any, Any]:
    rng = np.random.default_rng(args.seed)
    n = len(ds)
    if args.label in ds.column_names:
        good = np.flatnonzero(np.array([v == args.positive for v in ds[args.label]]))
        if len(good) < 4:
            raise SystemExit(f"Only {len(good)} rows with {args.label} == {args.positive!r}.")
        held = np.sort(rng.choice(good, size=max(2, int(round(len(good) * args.heldout))), replace=False))
    else:
        held = np.sort(rng.choice(n, size=max(2, int(round(n * args.heldout))), replace=False))
    train = np.setdiff1d(np.arange(n), held)
    return ds.select(train), ds.select(held)


def built_pairs(heldout):
    """Each held-out row's answer against another row's answer and against its own first 40%."""
    from hf_selectit.prompts import extract_pairs

    pairs = [p for p in extract_pairs(heldout[:]) if p.error is None]
    rows = {"prompt": [], "chosen": [], "rejected": [], "kind": []}
    for i, p in enumerate(pairs):
        other = pairs[(i + 1) % len(pairs)]
        rows["prompt"] += [p.instruction, p.instruction]
        rows["chosen"] += [p.response, p.response]
        rows["rejected"] += [other.response, p.response[: max(1, int(len(p.response) * 0.4))]]
        rows["kind"] += ["off_topic", "truncated"]
    from datasets import Dataset

    return Dataset.from_dict(rows)


# ------------------------------------------------------------------------------- model


def prompt_text(tokenizer, instruction: str) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": instruction}],
                                             add_generation_prompt=True, tokenize=False)
    return f"Instruction:\n{instruction}\nResponse:\n"


def encode(tokenizer, instruction: str, response: str, max_length: int) -> tuple[list, list]:
    """(input ids, labels) with the prompt masked (-100): loss on the answer tokens only."""
    prompt_ids = tokenizer(prompt_text(tokenizer, instruction), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer_ids = answer_ids + [tokenizer.eos_token_id]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None and \
        (not prompt_ids or prompt_ids[0] != tokenizer.bos_token_id) else []
    prompt_ids = (bos + prompt_ids)[: max_length // 2]
    ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + answer_ids)[:max_length]
    return ids, labels


def collate(examples, pad_id: int, device):
    """Right-padded (input ids, labels, attention mask) of `encode`d items (for evaluation)."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return ids.to(device), labels.to(device), mask.to(device)


def answer_logprobs(model, tokenizer, items, *, device, max_length: int, batch_size: int) -> np.ndarray:
    """Per item: (sum of answer-token log-probs, answer tokens)."""
    import torch

    out = np.zeros((len(items), 2))
    model.eval()
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            chunk = [encode(tokenizer, x, y, max_length) for x, y in items[start:start + batch_size]]
            ids, labels, mask = collate(chunk, tokenizer.pad_token_id, device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            target = labels[:, 1:]
            logp = torch.log_softmax(logits, dim=-1)
            picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            valid = target != -100
            out[start:start + len(chunk), 0] = (picked * valid).sum(1).cpu().numpy()
            out[start:start + len(chunk), 1] = valid.sum(1).cpu().numpy()
    return out


def fine_tune(base, tokenizer, items, args, device):
    """A copy of `base` trained for args.steps steps on `items` with TRL's `SFTTrainer`.

    Prompt-completion rows (the chat template's user turn when the tokenizer has one), loss on
    the completion tokens only, AdamW at a constant learning rate, no warm-up; same seed -> same
    batches. Returns the model (fp32, eval mode) and its per-step training losses.
    """
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    if getattr(tokenizer, "chat_template", None):
        rows = {"prompt": [[{"role": "user", "content": x}] for x, _ in items],
                "completion": [[{"role": "assistant", "content": y}] for _, y in items]}
    else:
        rows = {"prompt": [prompt_text(tokenizer, x) for x, _ in items], "completion": [y for _, y in items]}

    class StepLog(TrainerCallback):
        def on_log(self, _args, state, _control, logs=None, **kwargs):
            step = state.global_step
            if logs and "loss" in logs and (step % 10 == 0 or step == args.steps):
                _say(f"  step {step}/{args.steps}: train loss {logs['loss']:.3f}")

    # transformers renamed gradient_checkpointing (TRL's default: on) to activation_checkpointing
    # and warns on the old name; older releases know only the old one.
    names = {f.name for f in dataclasses.fields(SFTConfig)}
    no_checkpointing = {"activation_checkpointing" if "activation_checkpointing" in names
                        else "gradient_checkpointing": False}
    with tempfile.TemporaryDirectory(prefix="downstream-sft-") as out:
        config = SFTConfig(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr, lr_scheduler_type="constant", weight_decay=args.weight_decay,
            max_length=args.max_length, seed=args.seed, bf16=args.dtype == "bfloat16",
            use_cpu=str(device) == "cpu", logging_steps=1, save_strategy="no", report_to="none",
            disable_tqdm=True, **no_checkpointing,
        )
        trainer = SFTTrainer(model=copy.deepcopy(base), args=config, train_dataset=Dataset.from_dict(rows),
                             processing_class=tokenizer, callbacks=[StepLog()])
        trainer.remove_callback(PrinterCallback)  # its log dicts would go to stdout, the table's stream
        trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return trainer.model.float().eval(), losses


def evaluate_model(name, model, tokenizer, heldout_items, pairs, args, device) -> dict:
    from hf_selectit.metrics import stats

    lp = answer_logprobs(model, tokenizer, heldout_items, device=device,
                         max_length=args.max_length, batch_size=args.batch_size)
    loss = float(-lp[:, 0].sum() / lp[:, 1].sum())
    chosen = answer_logprobs(model, tokenizer, list(zip(pairs["prompt"], pairs["chosen"])),
                             device=device, max_length=args.max_length, batch_size=args.batch_size)
    rejected = answer_logprobs(model, tokenizer, list(zip(pairs["prompt"], pairs["rejected"])),
                               device=device, max_length=args.max_length, batch_size=args.batch_size)
    mean_c, mean_r = chosen[:, 0] / chosen[:, 1], rejected[:, 0] / rejected[:, 1]
    acc = stats.estimate(stats.mean_statistic(stats.pairwise_outcomes(mean_c, mean_r)), len(mean_c),
                         n_boot=args.n_boot, seed=args.seed)
    # Per-item held-out loss interval: bootstrap the token-weighted mean over items.
    nll, toks = -lp[:, 0], lp[:, 1]
    loss_ci = stats.estimate(lambda w: float(np.dot(w, nll) / np.dot(w, toks)), len(nll),
                             n_boot=args.n_boot, seed=args.seed)
    result = {"model": name, "heldout_loss": loss, "heldout_loss_ci": [loss_ci["ci_low"], loss_ci["ci_high"]],
              "heldout_items": len(heldout_items), "pairwise_accuracy_loglik": acc, "pairs": len(mean_c)}
    if not args.no_self_rating:
        result["pairwise_accuracy_selectit"] = self_rating(model, tokenizer, pairs, args)
    return result


def self_rating(model, tokenizer, pairs, args) -> dict:
    from hf_selectit import SelectITScorer, validate

    with tempfile.TemporaryDirectory(prefix="downstream-") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        scorer = SelectITScorer(model=tmp, prompts=args.prompts, device=args.device_resolved)
        report = validate(pairs.select_columns(["prompt", "chosen", "rejected"]), scorers=scorer,
                          tokenizer=False, n_boot=args.n_boot, seed=args.seed)
        from hf_selectit.models import clear_cache

        clear_cache()  # the temporary folder goes away; so must its cached copy
    row = report.result("selectit_sentence_score")
    return {k: row[k] for k in ("value", "ci_low", "ci_high", "n")}


# ------------------------------------------------------------------------------- main


def main(argv: Optional[list] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import datasets
    import torch

    from hf_selectit import SelectITScorer, select_random, select_top
    from hf_selectit.config import ScorerConfig
    from hf_selectit.models import load_model_and_tokenizer, resolve_device
    from hf_selectit.prompts import extract_pairs

    datasets.disable_progress_bars()
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    transformers.utils.logging.disable_progress_bar()
    disable_progress_bars()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    args.device_resolved = device
    t0 = time.time()

    ds = load_rows(args.data)
    train_pool, heldout = split_rows(ds, args)
    pairs = built_pairs(heldout) if args.pairs is None else _load_pairs(args.pairs)
    heldout_items = [(p.instruction, p.response) for p in extract_pairs(heldout[:]) if p.error is None]

    _say(f"{len(train_pool)} training-pool rows, {len(heldout_items)} held-out rows, {len(pairs)} "
         f"held-out pairs; scoring the pool with SelectIT on {device} ...")
    # 1. Score the pool and select (the scorer uses the same model as the one fine-tuned).
    scorer = SelectITScorer(model=args.model, prompts=args.prompts, device=device)
    scored = train_pool.map(scorer, batched=True, batch_size=64)
    selected = select_top(scored, ratio=args.ratio)
    k = len(selected)
    if k == 0:
        raise SystemExit(f"--ratio {args.ratio} keeps no row of {len(scored)}.")
    random_subset = select_random(scored, k=k, seed=args.seed)
    t_select = time.time() - t0

    def items(subset):
        return [(p.instruction, p.response) for p in extract_pairs(subset[:]) if p.error is None]

    base, tokenizer = load_model_and_tokenizer(ScorerConfig(model=args.model), device)
    tokenizer.padding_side = "right"
    _say(f"selected {k} rows in {t_select:.0f} s; evaluating the base model ...")
    results = [evaluate_model("base (no fine-tuning)", base, tokenizer, heldout_items, pairs, args, device)]
    for name, subset in ((f"selected (SelectIT top {args.ratio:.0%})", selected),
                         (f"random (same size, seed {args.seed})", random_subset)):
        t = time.time()
        _say(f"fine-tuning on {name}: {len(subset)} rows, {args.steps} steps ...")
        model, losses = fine_tune(base, tokenizer, items(subset), args, device)
        res = evaluate_model(name, model, tokenizer, heldout_items, pairs, args, device)
        res.update(train_rows=len(subset), train_loss_first=losses[0], train_loss_last=losses[-1],
                   seconds=round(time.time() - t, 1))
        if args.label in subset.column_names:
            res["train_kinds"] = dict(sorted(_count(subset[args.label]).items()))
        results.append(res)
        del model
    summary = {
        "command": "python scripts/downstream_check.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "data": args.data, "model": args.model or "embedded SmolLM2-135M-Instruct",
        "pool_rows": len(train_pool), "heldout_rows": len(heldout_items), "pairs": len(pairs),
        "pairs_source": args.pairs or "built from held-out rows (off-topic + truncated answers)",
        "selected_rows": k, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
        "seed": args.seed, "device": device, "dtype": args.dtype, "n_boot": args.n_boot,
        "seconds_scoring": round(t_select, 1), "seconds_total": round(time.time() - t0, 1),
        "results": results,
    }
    print(render(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2, default=str))
        print(f"\nfigures written to {args.json}")
    return 0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _count(values) -> dict:
    from collections import Counter

    return dict(Counter(values))


def _load_pairs(path: str):
    from hf_selectit.validation import pair_datasets
    from hf_selectit.report import response_texts
    from datasets import Dataset

    raw = load_rows(path)
    chosen, rejected, _ = pair_datasets(raw)
    from hf_selectit.prompts import extract_pairs

    prompts = [p.instruction for p in extract_pairs(chosen[:])]
    return Dataset.from_dict({"prompt": prompts, "chosen": response_texts(chosen),
                              "rejected": response_texts(rejected)})


def _ci(d: dict) -> str:
    if d.get("value") is None:
        return "-"
    return f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"


def render(s: dict) -> str:
    lines = [
        f"Downstream check: {s['data']} data, {s['model']}, {s['steps']} steps x batch "
        f"{s['batch_size']}, lr {s['lr']}, seed {s['seed']}, {s['device']} {s['dtype']}",
        f"training pool {s['pool_rows']} rows -> selected {s['selected_rows']}; held out "
        f"{s['heldout_rows']} rows; {s['pairs']} held-out pairs ({s['pairs_source']})",
        "",
        "| Model | Train rows | Held-out loss [95%] | Pair acc., log-lik [95%] | Pair acc., SelectIT self-rating [95%] |",
        "|---|---:|---|---|---|",
    ]
    for r in s["results"]:
        lo, hi = r["heldout_loss_ci"]
        loss = f"{r['heldout_loss']:.4f} [{lo:.4f}, {hi:.4f}]" if lo is not None else f"{r['heldout_loss']:.4f}"
        self_r = _ci(r["pairwise_accuracy_selectit"]) if "pairwise_accuracy_selectit" in r else "-"
        lines.append(f"| {r['model']} | {r.get('train_rows', '-')} | {loss} | "
                     f"{_ci(r['pairwise_accuracy_loglik'])} | {self_r} |")
    for r in s["results"][1:]:
        if "train_kinds" in r:
            lines.append(f"\n{r['model']}: trained on kinds {r['train_kinds']}; train loss "
                         f"{r['train_loss_first']:.3f} -> {r['train_loss_last']:.3f} ({r['seconds']} s)")
    lines.append(f"\ntotal {s['seconds_total']} s (scoring the pool {s['seconds_scoring']} s)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
