"""Score one dataset with several processes, on one machine or many.

Each process (rank) scores a contiguous slice of the rows chosen by
`datasets.distributed.split_dataset_by_node`, writes it to `output_dir/rank-XXXXX`, and rank 0
merges the slices back into the original row order after checking, through an original-position
column carried with every row, that no row was lost or scored twice. `output_dir` must be on a
filesystem every rank can read (the merge happens on rank 0).

Launch (one line per machine; the same command with `--machine_rank 1` on the second)::

    accelerate launch --num_machines 2 --machine_rank 0 --main_process_ip 10.0.0.1 \\
        --main_process_port 29500 --num_processes 16 \\
        -m hf_selectit.distributed --input data.json --output /shared/run1 --model Qwen/Qwen2.5-7B

or on one machine, CPU or GPU: `torchrun --standalone --nproc_per_node 2 -m hf_selectit.distributed
--input data.json --output run1`. See docs/scaling.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
from typing import TYPE_CHECKING, Any, Optional, Sequence

from .config import ScorerConfig
from .errors import ConfigError, SelectITError, ShardMergeError

if TYPE_CHECKING:  # pragma: no cover
    from accelerate import PartialState
    from datasets import Dataset

logger = logging.getLogger(__name__)

#: Original-position column carried through scoring and removed after the merge.
INDEX_COLUMN = "__selectit_index__"
#: Sub-directory of `output_dir` that receives the merged, scored dataset.
MERGED_DIRNAME = "merged"
_SHARD_META = "selectit_shard.json"
_MERGE_ERROR = "MERGE_FAILED.txt"


def shard_dir(output_dir: str, rank: int) -> str:
    """Path of the shard written by `rank` inside `output_dir` (`rank-00003`)."""
    return os.path.join(output_dir, f"rank-{rank:05d}")


def _state(cpu: Optional[bool] = None) -> "PartialState":
    import torch
    from accelerate import PartialState

    # Under torchrun on a CPU-only machine PartialState() reports a single process unless told
    # cpu=True (then it is MULTI_CPU over gloo, as wanted).
    if cpu is None:
        cpu = not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def score_distributed(
    ds: "Dataset",
    scorer_config: Optional[ScorerConfig] = None,
    *,
    output_dir: str,
    batch_size: int = 256,
    keep_shards: bool = False,
    state: Optional["PartialState"] = None,
) -> "Dataset":
    """Score `ds` with every process of the launch (torchrun / accelerate launch) and merge.

    Call it on every rank with the same `ds` (same rows, same order) and the same arguments.
    Rank r scores `split_dataset_by_node(ds, rank=r, world_size=W)` (a contiguous slice), saves
    it to `output_dir/rank-XXXXX` (written under a temporary name, then renamed), all ranks meet
    at a barrier, and rank 0 concatenates the shards, puts the rows back in their original order,
    checks that the original positions are exactly 0..len(ds)-1 once each, drops the helper
    column, attaches the scorer's provenance and saves the result to `output_dir/merged`.
    Without a launcher (a single process) it does the same with one shard.

    Args:
        ds: the rows to score (any schema the scorer accepts). Must not contain a column named
            `__selectit_index__`.
        scorer_config: the scorer's options; None = `ScorerConfig()` (embedded SmolLM2). When its
            `device` is None each rank uses its own device (`cuda:<local rank>` or cpu).
        output_dir: directory on a filesystem shared by all ranks (created if missing).
        batch_size: rows per `Dataset.map` batch (the scorer splits it further by its token budget).
        keep_shards: keep `output_dir/rank-*` after a successful merge (default: removed).
        state: an `accelerate.PartialState`; None builds one (cpu=True when there is no CUDA).

    Returns:
        The merged, scored Dataset (original order, `selectit_*` columns added), loaded from
        `output_dir/merged`, on every rank. Write further outputs only where
        `state.is_main_process`.

    Raises:
        ConfigError: `ds` already has the helper column, has fewer rows than there are
            processes, or batch_size < 1.
        ShardMergeError: the shards do not cover every input row exactly once.

    Example:
        >>> # torchrun --standalone --nproc_per_node 4 my_script.py, my_script.py containing:
        >>> merged = score_distributed(ds, ScorerConfig(model="Qwen/Qwen2.5-0.5B"), output_dir="run1")
    """
    import numpy as np
    from datasets import load_from_disk
    from datasets.distributed import split_dataset_by_node

    if INDEX_COLUMN in ds.column_names:
        raise ConfigError(
            f"The dataset already has a column {INDEX_COLUMN!r}, which score_distributed uses to "
            f"track row positions. Columns: {ds.column_names}. Remove or rename it first."
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is invalid: expected an int >= 1.")
    from .scorer import SelectITScorer

    config = scorer_config if scorer_config is not None else ScorerConfig()
    state = state if state is not None else _state()
    rank, world_size = state.process_index, state.num_processes
    if config.device is None and state.device.type != "cpu":
        # One model per process on its own GPU, whatever the scorer's own rank rule would pick.
        config = dataclasses.replace(config, device=str(state.device))

    n_rows = len(ds)
    if n_rows < world_size:
        # split_dataset_by_node cannot give a rank an empty slice (IndexError in datasets).
        raise ConfigError(
            f"The dataset has {n_rows} rows for {world_size} processes: every process needs at "
            f"least one row. Launch at most {max(n_rows, 1)} processes, or score it in one process."
        )
    os.makedirs(output_dir, exist_ok=True)
    merged_path = os.path.join(output_dir, MERGED_DIRNAME)
    error_path = os.path.join(output_dir, _MERGE_ERROR)
    if state.is_main_process:
        # Other ranks read `merged` only after the last barrier, so a stale result of an earlier
        # run can be removed here without a race, and is never returned for this run.
        shutil.rmtree(merged_path, ignore_errors=True)
        if os.path.exists(error_path):
            os.remove(error_path)
    indexed = ds.add_column(INDEX_COLUMN, np.arange(n_rows, dtype=np.int64))
    part = split_dataset_by_node(indexed, rank=rank, world_size=world_size)
    logger.info("rank %d/%d: scoring %d of %d rows", rank, world_size, len(part), n_rows)
    scorer = SelectITScorer.from_config(config)
    scored = part.map(scorer, batched=True, batch_size=batch_size, desc=f"SelectIT rank {rank}")
    _write_shard(scored, output_dir, rank=rank, world_size=world_size, n_rows=n_rows)

    state.wait_for_everyone()
    failure: Optional[BaseException] = None
    if state.is_main_process:
        try:
            merged = merge_shards(output_dir, world_size=world_size, n_rows=n_rows)
            _save_atomically(_attach_info(merged, scorer), merged_path)
        except (ShardMergeError, OSError) as err:
            # The other ranks are waiting at the barrier below: tell them instead of leaving
            # them to load a result that does not exist.
            failure = err
            with open(error_path, "w") as f:
                f.write(f"{type(err).__name__}: {err}")
        else:
            if not keep_shards:
                for r in range(world_size):
                    shutil.rmtree(shard_dir(output_dir, r), ignore_errors=True)
            logger.info("merged %d rows from %d ranks into %s", n_rows, world_size, merged_path)
    state.wait_for_everyone()
    if failure is not None:
        raise failure
    if os.path.exists(error_path):
        with open(error_path) as f:
            raise ShardMergeError(f"Rank 0 could not merge the shards in {output_dir!r}: {f.read()}")
    return load_from_disk(merged_path)


def _attach_info(ds: "Dataset", scorer: Any) -> "Dataset":
    from .metadata import attach_scorer_info

    return attach_scorer_info(ds, scorer.info())


def _save_atomically(ds: "Dataset", path: str, *, meta: Optional[dict] = None) -> None:
    # A reader (or a rerun) never sees a half-written directory under the final name; the shard
    # metadata is written before the rename, so a shard without it never looks complete.
    tmp = f"{path}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    ds.save_to_disk(tmp)
    if meta is not None:
        with open(os.path.join(tmp, _SHARD_META), "w") as f:
            json.dump(meta, f)
    if os.path.exists(path):
        shutil.rmtree(path)
    os.replace(tmp, path)


def _write_shard(scored: "Dataset", output_dir: str, *, rank: int, world_size: int, n_rows: int) -> None:
    _save_atomically(scored, shard_dir(output_dir, rank), meta={
        "rank": rank, "world_size": world_size, "n_rows": n_rows, "shard_rows": len(scored)})


def merge_shards(output_dir: str, *, world_size: int, n_rows: int) -> "Dataset":
    """Concatenate `output_dir/rank-00000 .. rank-{world_size-1}` back into the original order.

    Args:
        output_dir: the directory the ranks wrote their shards to.
        world_size: number of shards expected.
        n_rows: number of rows of the input dataset.

    Returns:
        The merged Dataset in original row order, without the `__selectit_index__` column.

    Raises:
        ShardMergeError: a shard is missing or from another run, or the original positions are
            not exactly 0..n_rows-1 once each (the message lists what is missing or doubled).

    Example:
        >>> merged = merge_shards("run1", world_size=2, n_rows=999)
    """
    import numpy as np
    from datasets import concatenate_datasets, load_from_disk

    shards = []
    for r in range(world_size):
        path = shard_dir(output_dir, r)
        meta_path = os.path.join(path, _SHARD_META)
        if not os.path.exists(meta_path):
            present = sorted(p for p in os.listdir(output_dir) if p.startswith("rank-"))
            raise ShardMergeError(
                f"Shard of rank {r} not found at {path!r}; present: {present}. Every rank must "
                f"write to the same output_dir on a shared filesystem."
            )
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("world_size") != world_size or meta.get("n_rows") != n_rows:
            raise ShardMergeError(
                f"Shard {path!r} is from another run (world_size={meta.get('world_size')}, "
                f"n_rows={meta.get('n_rows')}; expected {world_size}, {n_rows}). "
                f"Use a fresh output_dir."
            )
        shards.append(load_from_disk(path))
    merged = concatenate_datasets(shards) if len(shards) > 1 else shards[0]
    if INDEX_COLUMN not in merged.column_names:
        raise ShardMergeError(f"The shards in {output_dir!r} have no {INDEX_COLUMN!r} column.")
    positions = np.asarray(merged.data.column(INDEX_COLUMN).to_numpy(), dtype=np.int64)
    _check_positions(positions, n_rows)
    order = np.argsort(positions, kind="stable")
    if not np.array_equal(order, np.arange(n_rows)):
        merged = merged.select(order)
    merged = merged.remove_columns(INDEX_COLUMN)
    return merged.flatten_indices() if merged._indices is not None else merged


def _check_positions(positions: "Any", n_rows: int) -> None:
    import numpy as np

    bad = positions[(positions < 0) | (positions >= n_rows)]
    counts = np.bincount(positions[(positions >= 0) & (positions < n_rows)], minlength=n_rows)
    missing = np.flatnonzero(counts == 0)
    doubled = np.flatnonzero(counts > 1)
    if len(bad) or len(missing) or len(doubled):
        raise ShardMergeError(
            f"The merged shards have {len(positions)} rows for {n_rows} input rows: "
            f"{len(missing)} missing (first: {missing[:10].tolist()}), {len(doubled)} duplicated "
            f"(first: {doubled[:10].tolist()}), {len(bad)} out of range. Nothing was saved; "
            f"rerun with a fresh output_dir."
        )


# --- command line: torchrun / accelerate launch -m hf_selectit.distributed ---

def build_parser(method: Optional[str] = None) -> argparse.ArgumentParser:
    """The argument parser of `python -m hf_selectit.distributed` (generated by hf_selectit.options
    from the same dataclasses as `hf-selectit score`: one definition of every option)."""
    from . import options
    from .config import IOConfig, RunOptions

    parser = options.ArgumentParser(
        prog="python -m hf_selectit.distributed",
        description="Score a dataset with every process of a torchrun / accelerate launch; "
                    "rank 0 merges the shards in the original order into OUTPUT/merged.",
    )
    parser.add_argument("--method", default=argparse.SUPPRESS, metavar="NAME",
                        help="Scoring method (default: selectit).")
    options.add_options(parser, IOConfig, title="input/output", exclude=("output_format",))
    options.add_options(parser, RunOptions, title="execution", only=("batch_size", "keep_checkpoints"))
    options.add_options(parser, options.method_class(method), title="scorer options")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of `torchrun ... -m hf_selectit.distributed`; returns the exit status
    (0 done, 2 a user error)."""
    import sys as _sys

    from . import options
    from .config import IOConfig, RunOptions
    from .errors import ConfigError

    argv = list(_sys.argv[1:] if argv is None else argv)
    method = next((argv[i + 1] for i, t in enumerate(argv[:-1]) if t == "--method"), None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        args = build_parser(method).parse_args(argv)
        io = options.from_args(IOConfig, args)
        run = options.from_args(RunOptions, args)
        config = options.from_args(options.method_class(method), args)
        if not io.input or not io.output:
            raise ConfigError("--input and --output are required (OUTPUT: a directory on a "
                              "filesystem shared by all ranks).")
        from .io import load_input

        ds = load_input(io.input, split=io.split, config_name=io.config_name, revision=io.revision,
                        limit=io.limit)
        merged = score_distributed(ds, config, output_dir=io.output, batch_size=run.batch_size,
                                   keep_shards=run.keep_checkpoints)
    except SelectITError as exc:
        logger.error("%s: %s", type(exc).__name__, exc)
        return 2
    logger.info("done: %d rows, columns %s", len(merged), merged.column_names)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
