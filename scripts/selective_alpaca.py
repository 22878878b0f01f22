#!/usr/bin/env python
"""Make Selective Alpaca: the SelectIT paper's recipe, on hf-selectit's pipeline.

Alpaca-GPT4 (vicgalle/alpaca-gpt4, train, 52,002 rows) is scored with LLaMA-2 7B, 13B and 70B
(five rating prompts, alpha 0.2), the three sentence scores are fused with parameter-count
weights (7e9, 13e9, 70e9; the paper's model level), the top 20% (10,400 rows) is kept and
published with a generated card and a version tag.

Where the Hub and GPUs exist, as is::

    python scripts/selective_alpaca.py --repo-id me/Selective-Alpaca-GPT4

Offline, on a local file with the embedded SmolLM2 (or any local model folder)::

    python scripts/selective_alpaca.py --data ../shared/data/alpaca_gpt4_demo_999.json \\
        --limit 40 --output runs/alpaca-offline
    python scripts/selective_alpaca.py --data data.json --model /models/llama-2-7b --model /models/llama-2-13b

The run is resumable: run the same command again after a crash and finished shards are skipped.
The same job as YAML: hf_selectit/configs/selective_alpaca.yaml (`hf-selectit run --example selective_alpaca`).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

RECIPE_DATASET = "vicgalle/alpaca-gpt4"
RECIPE_MODELS = [
    ("meta-llama/Llama-2-7b-hf", "selectit_7b_", 7e9),
    ("meta-llama/Llama-2-13b-hf", "selectit_13b_", 13e9),
    ("meta-llama/Llama-2-70b-hf", "selectit_70b_", 70e9),
]
RATIO = 0.2
LICENSE = "cc-by-nc-4.0"  # Alpaca-GPT4's data licence


def build_parser():
    """The recipe's own flags (--data, --model, --output) plus the package's options, generated
    by hf_selectit.options from the same dataclasses as `hf-selectit run` (one definition)."""
    from hf_selectit import options
    from hf_selectit.config import IOConfig, PublishConfig, RunOptions, ScorerConfig

    p = options.option_parser(
        {"io": IOConfig, "scorer": ScorerConfig, "run": RunOptions, "publish": PublishConfig},
        only=("limit", "dtype", "batch_size", "shard_rows", "num_proc", "repo_id", "version", "overwrite"),
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help=f"Local JSON/JSONL/Parquet file or folder instead of {RECIPE_DATASET}.")
    p.add_argument("--model", action="append",
                   help="Scoring model (Hub id or local path; repeat for the model level); "
                        "'embedded' = the bundled SmolLM2-135M-Instruct. Default: the recipe's "
                        "LLaMA-2 7B/13B/70B, or the embedded model with --data.")
    p.add_argument("--output", default="runs/selective-alpaca",
                   help="Run folder: scored/, subset/ and the shard checkpoints (default: %(default)s).")
    return p


def recipe_config(args: argparse.Namespace) -> dict:
    """The run configuration (the same mapping a YAML file gives `hf-selectit run`)."""
    offline = args.data is not None
    if args.model:
        models = []
        for i, name in enumerate(args.model):
            entry = {"model": None if name == "embedded" else name}
            if len(args.model) > 1:
                entry["column_prefix"] = f"selectit_m{i}_"
            models.append(entry)
    elif offline:
        models = [{"model": None}]
    else:
        models = [{"model": m, "column_prefix": p, "params": n} for m, p, n in RECIPE_MODELS]
    scorer = {"prompts": 5, "alpha": 0.2, "normalization": "paper"}
    flags = args.flags  # the package's options given on the command line, converted
    if "dtype" in flags:
        scorer["dtype"] = flags["dtype"]
    out = Path(args.output)
    card = {
        "pretty_name": "Selective Alpaca (SelectIT, top 20%)",
        "language": ["en"],
        "task_categories": ["text-generation"],
        "reproduce_command": shlex.join(["python", "scripts/selective_alpaca.py", *sys.argv[1:]]),
    }
    config = {
        "input": args.data or RECIPE_DATASET,
        "split": "train",
        "output": str(out / "scored"),
        "subset_output": str(out / "subset"),
        "shard_rows": 32 if offline else 1024,
        "scorer": scorer,
        "models": models,
        "select": {"ratio": RATIO},
        "publish": {"repo_id": str(out / "published"), "license": LICENSE},
        "card_data": card,
    }
    # Defaults above the dataclasses' (shard_rows, repo_id) are the recipe's; a flag wins.
    for name in ("limit", "batch_size", "shard_rows", "num_proc"):
        if name in flags:
            config[name] = flags[name]
    for name in ("repo_id", "version", "overwrite"):
        if name in flags:
            config["publish"][name] = flags[name]
    return config


def main(argv: list[str] | None = None) -> int:
    from hf_selectit.cli import run_config_mapping

    args = build_parser().parse(sys.argv[1:] if argv is None else argv)
    return run_config_mapping(recipe_config(args))


if __name__ == "__main__":
    sys.exit(main())
