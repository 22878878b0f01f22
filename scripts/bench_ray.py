"""The Ray engine against the single-process path on this machine: start-up overhead and rows/s.

Scores the same rows twice, once with the local engine (one process, torch on --threads threads)
and once with ``score_on_ray`` on a local Ray cluster it starts (``ray.init(num_cpus=--cpus,
num_gpus=0)``, --workers actors, one CPU and so one torch thread each), and prints for each:

- ``cluster``: seconds to start the local Ray cluster (Ray only);
- ``first rows``: seconds from the call to the first scored rows (model load, and on Ray the
  actors' start and the first block), the start-up overhead;
- ``steady rows/s``: rows after the first report divided by the time after it;
- ``total`` and ``rows/s``: the whole call, start-up included;
- the largest score difference between the two (sentence score or the method's score column).

Usage (from the repository root):
    .venv/bin/python scripts/bench_ray.py --model tiny --rows 64
    .venv/bin/python scripts/bench_ray.py --model embedded --rows 24
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def rows_of(path: str, n: int) -> list:
    data = json.loads(Path(path).read_text())
    return [{k: r.get(k, "") for k in ("instruction", "input", "output")} for r in data[:n]]


def timed_run(score, n_rows: int) -> dict:
    """Run ``score(on_progress)``; the times of its first and last row reports."""
    marks: list = []

    def on_progress(event) -> None:
        if event.kind in ("rows", "shard") and event.rows:
            marks.append((time.perf_counter(), event.rows))

    t0 = time.perf_counter()
    result = score(on_progress)
    total = time.perf_counter() - t0
    first_t, first_rows = marks[0]
    steady = (n_rows - first_rows) / (marks[-1][0] - first_t) if marks[-1][0] > first_t else float("nan")
    return {"result": result, "first rows": first_t - t0, "steady rows/s": steady, "total": total,
            "rows/s": n_rows / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="'tiny' (tests/tiny_lm.py), 'embedded' (SmolLM2) or a path")
    parser.add_argument("--data", default="../shared/data/alpaca_gpt4_demo_999.json")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--shard-rows", type=int, default=8, help="rows per Ray block / local shard")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the local engine")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import datasets
    import torch

    from hf_selectit import score_on_ray
    from hf_selectit.config import RunOptions, ScorerConfig
    from hf_selectit.methods import make_scorer
    from hf_selectit.pipeline import score_dataset

    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    model = args.model
    if model == "tiny":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.tiny_lm import CHAT_TEMPLATE, build_tiny_model_dir

        model = str(build_tiny_model_dir(tmp / "tiny", chat_template=CHAT_TEMPLATE))
    elif model == "embedded":
        model = None
    ds = datasets.Dataset.from_list(rows_of(args.data, args.rows))
    config = ScorerConfig(model=model, prompts=args.prompts)
    run = RunOptions(shard_rows=args.shard_rows, batch_size=args.batch_size)

    torch.set_num_threads(args.threads)
    local = timed_run(lambda cb: score_dataset(ds, make_scorer(config), run=run, work_dir=tmp / "local",
                                               on_progress=cb)[0], len(ds))

    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, num_gpus=0, include_dashboard=False, logging_level="WARNING")
    cluster = time.perf_counter() - t0
    on_ray = timed_run(lambda cb: score_on_ray(ds, make_scorer(config), num_workers=args.workers,
                                               shard_rows=args.shard_rows, batch_size=args.batch_size,
                                               work_dir=tmp / "ray", on_progress=cb), len(ds))
    column = "selectit_sentence_score"
    diff = float(np.max(np.abs(np.asarray(local["result"][column]) - np.asarray(on_ray["result"][column]))))
    print(f"\nmodel {args.model}, {len(ds)} rows, {args.prompts} prompts, shard/block {args.shard_rows} rows, "
          f"batch {args.batch_size}; torch {torch.__version__}, ray {ray.__version__}")
    print("| path | cluster s | first rows s | steady rows/s | total s | rows/s |")
    print("|---|---|---|---|---|---|")
    print(f"| local, 1 process, {args.threads} threads | - | {local['first rows']:.1f} | "
          f"{local['steady rows/s']:.2f} | {local['total']:.1f} | {local['rows/s']:.2f} |")
    print(f"| Ray, {args.workers} actors on {args.cpus} CPUs | {cluster:.1f} | {on_ray['first rows']:.1f} | "
          f"{on_ray['steady rows/s']:.2f} | {on_ray['total']:.1f} | {on_ray['rows/s']:.2f} |")
    print(f"max |sentence score difference| {diff:.2e}")


if __name__ == "__main__":
    main()
