"""Score one dataset with several processes, on one machine or many: the launcher entry point.

There is one runner (:mod:`hf_selectit.runner`) for one process and for many: under
``torchrun`` / ``accelerate launch`` each process scores its share of the checkpointed shards
and rank 0 merges them back into the original row order. This module is only the command-line
entry point ``python -m hf_selectit.distributed`` (the options and exit codes of
``hf-selectit score``) and :func:`score_distributed`, a thin Python wrapper. The work directory
must be on a filesystem every rank can read (rank 0 merges).

Launch (one line per machine; the same command with ``--machine_rank 1`` on the second)::

    accelerate launch --num_machines 2 --machine_rank 0 --main_process_ip 10.0.0.1 \\
        --main_process_port 29500 --num_processes 16 \\
        -m hf_selectit.distributed --input data.json --output /shared/run1 --model Qwen/Qwen2.5-7B

or on one machine, CPU or GPU: ``torchrun --standalone --nproc_per_node 2 -m hf_selectit.distributed
--input data.json --output run1``. The result is ``OUTPUT/merged`` (``load_from_disk``). See
docs/scaling.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from typing import TYPE_CHECKING, Any, Optional, Sequence

from .config import ScorerConfig
from .errors import ShardMergeError

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

logger = logging.getLogger(__name__)

#: Sub-directory of `output_dir` that receives the merged, scored dataset.
MERGED_DIRNAME = "merged"

__all__ = ["MERGED_DIRNAME", "ShardMergeError", "build_parser", "main", "score_distributed"]


def score_distributed(
    ds: "Dataset",
    scorer_config: Optional[ScorerConfig] = None,
    *,
    output_dir: str,
    batch_size: Optional[int] = None,
    keep_shards: bool = False,
    state: Any = None,
) -> Optional["Dataset"]:
    """Score ``ds`` with every process of the launch (torchrun / accelerate launch) and merge.

    The same runner as ``hf-selectit score``: call it on every rank with the same rows; the
    rows are cut into checkpointed shards under ``output_dir`` (a restart scores only the
    unfinished ones), each rank scores its share, and rank 0 merges them in the original order,
    checks that they add up to the input exactly, attaches the scorer's provenance and saves
    ``output_dir/merged``. Without a launcher it is one process doing all of it.

    Args:
        ds: the rows to score (the same rows in the same order on every rank).
        scorer_config: the scorer's options; None = ``ScorerConfig()`` (embedded SmolLM2).
        output_dir: directory on a filesystem shared by all ranks (created if missing).
        batch_size: rows per ``Dataset.map`` batch (None: ``RunOptions``' default).
        keep_shards: keep the shard checkpoints after a successful merge (default: removed).
        state: unused; the launcher's world is read by the runner (kept for compatibility).

    Returns:
        The merged, scored Dataset on the main process; None on the others.

    Raises:
        ConfigError: the input is empty or already has the scorer's columns.
        OutputLockedError: another run is writing ``output_dir``.
        ShardMergeError: the shards do not cover every input row exactly once.

    Example:
        >>> # torchrun --standalone --nproc_per_node 4 my_script.py, my_script.py containing:
        >>> merged = score_distributed(ds, ScorerConfig(model="Qwen/Qwen2.5-0.5B"), output_dir="run1")
    """
    from dataclasses import replace

    from .pipeline import RunOptions, score_dataset

    run = RunOptions(keep_checkpoints=keep_shards)
    if batch_size is not None:
        run = replace(run, batch_size=batch_size)
    os.makedirs(output_dir, exist_ok=True)
    scored, _ = score_dataset(ds, scorer_config if scorer_config is not None else ScorerConfig(),
                              run=run, work_dir=os.path.join(output_dir, "work"))
    if scored is None:
        return None
    merged_path = os.path.join(output_dir, MERGED_DIRNAME)
    tmp = f"{merged_path}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    scored.save_to_disk(tmp)
    shutil.rmtree(merged_path, ignore_errors=True)
    os.replace(tmp, merged_path)
    return scored


# --- command line: torchrun / accelerate launch -m hf_selectit.distributed ---

def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m hf_selectit.distributed`."""
    parser = argparse.ArgumentParser(
        prog="python -m hf_selectit.distributed",
        description="Score a dataset with every process of a torchrun / accelerate launch; "
                    "rank 0 merges the shards in the original order into OUTPUT/merged.",
    )
    parser.add_argument("--input", required=True,
                        help="Hub dataset id, .json/.jsonl/.parquet/.csv file or save_to_disk folder.")
    parser.add_argument("--split", default="train", help="Split to read (Hub ids, folders).")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N rows.")
    parser.add_argument("--output", required=True,
                        help="Output directory on a filesystem shared by all ranks; the result "
                             "goes to OUTPUT/merged (Dataset.save_to_disk).")
    parser.add_argument("--keep-shards", dest="keep_checkpoints", action="store_true",
                        default=argparse.SUPPRESS, help="Same as --keep-checkpoints.")
    # The same generated options (names, help, parsing) as `hf-selectit score`: one definition.
    from .cli import add_dataclass_options
    from .pipeline import RunOptions

    add_dataclass_options(parser, ScorerConfig, title="scorer options")
    add_dataclass_options(parser, RunOptions, title="execution", exclude=("subset_output",))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of `torchrun ... -m hf_selectit.distributed`; returns the exit status (that
    of `hf-selectit score`)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from .cli import _guarded, _run_with_progress, build_config
    from .io import IOConfig
    from .pipeline import PipelineConfig, RunOptions

    def job() -> int:
        io = IOConfig(input=args.input, split=args.split, limit=args.limit,
                      output=os.path.join(args.output, MERGED_DIRNAME))
        scorer = build_config(ScorerConfig, args, {})
        run = build_config(RunOptions, args, {}, exclude=("subset_output",))
        if run.work_dir is None:
            run = _with_work_dir(run, os.path.join(args.output, "work"))
        return _run_with_progress(PipelineConfig(io=io, run=run, models=[scorer], model_params=[None]))

    return _guarded("distributed", job)


def _with_work_dir(run: Any, work_dir: str) -> Any:
    from dataclasses import replace

    return replace(run, work_dir=work_dir)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
