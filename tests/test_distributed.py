"""Multi-process scoring (hf_selectit.distributed): shard, score, merge back in original order.

The end-to-end test launches two real processes with `torchrun` (gloo on CPU) on the tiny model
and compares the merged result with a single-process `Dataset.map` run of the same scorer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hf_selectit.distributed import (
    INDEX_COLUMN,
    MERGED_DIRNAME,
    ShardMergeError,
    _write_shard,
    merge_shards,
    score_distributed,
    shard_dir,
)
from hf_selectit.errors import ConfigError


def _rows(n: int) -> list[dict]:
    # Varied lengths (so padding and the token budget matter) and a few Alpaca `input`s.
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    rows = []
    for i in range(n):
        body = " ".join(words[(i + j) % len(words)] for j in range(3 + (i * 7) % 23))
        rows.append({
            "instruction": f"Task {i}: rewrite the words.",
            "input": "" if i % 3 else f"context {i}",
            "output": body + "." * (i % 4),
        })
    return rows


def _fake_shards(tmp_path, positions_by_rank: list[list[int]], n_rows: int) -> str:
    from datasets import Dataset

    out = str(tmp_path / "run")
    os.makedirs(out, exist_ok=True)
    for rank, positions in enumerate(positions_by_rank):
        shard = Dataset.from_dict({"value": [f"row{p}" for p in positions], INDEX_COLUMN: positions})
        _write_shard(shard, out, rank=rank, world_size=len(positions_by_rank), n_rows=n_rows)
    return out


def test_merge_restores_original_order_and_drops_helper_column(tmp_path):
    out = _fake_shards(tmp_path, [[4, 0, 2], [1, 3]], n_rows=5)
    merged = merge_shards(out, world_size=2, n_rows=5)
    assert merged.column_names == ["value"]
    assert merged["value"] == [f"row{i}" for i in range(5)]


@pytest.mark.parametrize(
    "positions, words",
    [
        ([[0, 1], [3, 4]], "1 missing (first: [2])"),
        ([[0, 1, 2], [2, 3, 4]], "1 duplicated (first: [2])"),
        ([[0, 1, 2], [3, 9]], "1 missing (first: [4])"),
    ],
)
def test_merge_refuses_lost_or_duplicated_rows(tmp_path, positions, words):
    out = _fake_shards(tmp_path, positions, n_rows=5)
    with pytest.raises(ShardMergeError, match=r"\d+ missing") as info:
        merge_shards(out, world_size=2, n_rows=5)
    assert words in str(info.value)


def test_merge_refuses_missing_or_stale_shard(tmp_path):
    import shutil

    out = _fake_shards(tmp_path, [[0, 1, 2], [3, 4]], n_rows=5)
    # A shard left over from a run with another size is not silently merged.
    with pytest.raises(ShardMergeError, match="another run"):
        merge_shards(out, world_size=2, n_rows=6)
    shutil.rmtree(shard_dir(out, 1))
    with pytest.raises(ShardMergeError, match="Shard of rank 1 not found"):
        merge_shards(out, world_size=2, n_rows=5)


def test_score_distributed_refuses_reserved_column(tmp_path):
    from datasets import Dataset

    ds = Dataset.from_dict({"instruction": ["a"], "output": ["b"], INDEX_COLUMN: [0]})
    with pytest.raises(ConfigError, match=INDEX_COLUMN):
        score_distributed(ds, output_dir=str(tmp_path / "x"))


def test_score_distributed_refuses_more_processes_than_rows(tmp_path):
    from accelerate import PartialState
    from datasets import Dataset

    class _FourRanks:  # the world as seen by rank 0 of a 4-process launch
        process_index, num_processes = 0, 4
        device = PartialState(cpu=True).device

    ds = Dataset.from_dict({"instruction": ["a", "b", "c"], "output": ["x", "y", "z"]})
    with pytest.raises(ConfigError, match="3 rows for 4 processes"):
        score_distributed(ds, output_dir=str(tmp_path / "x"), state=_FourRanks())


def _single_process(tiny_model_dir, rows):
    from datasets import Dataset

    from hf_selectit import SelectITScorer

    ds = Dataset.from_list(rows)
    return ds, ds.map(SelectITScorer(model=str(tiny_model_dir), max_batch_tokens=512),
                      batched=True, batch_size=8)


def _assert_same_scores(merged, single):
    assert merged.column_names == single.column_names
    assert len(merged) == len(single)
    for column in ("instruction", "input", "output", "selectit_status"):
        assert merged[column] == single[column], column
    for column in ("selectit_sentence_score", "selectit_uncertainty", "selectit_token_scores",
                   "selectit_rating_probs"):
        # Rows are grouped into different micro-batches per process; float32 rounding then
        # moves scores by ~1e-6. 1e-5 is the bar for batch-size independence.
        np.testing.assert_allclose(np.asarray(merged[column], dtype=float),
                                   np.asarray(single[column], dtype=float), rtol=0, atol=1e-5,
                                   err_msg=column)


def test_single_process_run_equals_plain_map(tmp_path, tiny_model_dir):
    from hf_selectit.config import ScorerConfig
    from hf_selectit.metadata import scorer_infos

    rows = _rows(11)
    ds, single = _single_process(tiny_model_dir, rows)
    config = ScorerConfig(model=str(tiny_model_dir), max_batch_tokens=512)
    merged = score_distributed(ds, config, output_dir=str(tmp_path / "run"), batch_size=4)
    _assert_same_scores(merged, single)
    assert "selectit_" in scorer_infos(merged)
    assert not os.path.exists(shard_dir(str(tmp_path / "run"), 0))  # shards removed after merge


def test_torchrun_two_processes_equals_single_process(tmp_path, tiny_model_dir):
    from datasets import load_from_disk

    rows = _rows(23)  # odd: the two ranks get 12 and 11 rows
    data = tmp_path / "data.json"
    data.write_text(json.dumps(rows))
    out = tmp_path / "run"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "hf_selectit.distributed",
           "--input", str(data), "--output", str(out), "--model", str(tiny_model_dir),
           "--max-batch-tokens", "512", "--batch-size", "5", "--keep-checkpoints"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    # Both ranks really scored: each left its shard (kept), of the sizes split_dataset_by_node gives.
    sizes = [len(load_from_disk(shard_dir(str(out), r))) for r in range(2)]
    assert sizes == [12, 11]
    merged = load_from_disk(str(out / MERGED_DIRNAME))
    from datasets import Dataset

    ds, single = _single_process(tiny_model_dir, rows)
    # The json loader and from_list agree on the input columns; compare everything.
    _assert_same_scores(merged, single)
    assert isinstance(merged, Dataset)


def test_distributed_options_are_the_clis():
    # The launcher's options come from the one generator (hf_selectit.options): a True default
    # stays True, --no-flag turns it off, the model's revision is --model-revision as in
    # `hf-selectit score`, and the batch size default is the one RunOptions default.
    from hf_selectit import options
    from hf_selectit.config import RunOptions, ScorerConfig
    from hf_selectit.distributed import build_parser

    base = ["--input", "x.json", "--output", "out"]
    default = options.from_args(ScorerConfig, build_parser().parse_args(base))
    assert default.reuse_prompt_prefix is True and default.alpha == 0.2
    assert options.from_args(RunOptions, build_parser().parse_args(base)).batch_size == RunOptions().batch_size
    args = build_parser().parse_args(base + ["--no-reuse-prompt-prefix", "--alpha", "0.5",
                                             "--model-revision", "v2", "--prompts", "3"])
    config = options.from_args(ScorerConfig, args)
    assert (config.reuse_prompt_prefix, config.alpha, config.revision, config.prompts) == (False, 0.5, "v2", 3)
