"""The several-GPUs-on-one-machine recipe, run on CPU with two worker processes (also through
the local engine's checkpointed runner, `num_proc: 2`).

    multiprocess.set_start_method("spawn")
    ds.map(scorer, batched=True, with_rank=True, num_proc=n_gpus)

Each worker receives the scorer's few bytes of config (not a model), loads the model lazily on
`cuda:{rank % n}` (here: cpu) and scores its contiguous part; `datasets` concatenates the parts
in order. The result must equal the single-process run row for row.
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def spawn_start_method():
    import multiprocess

    # CUDA cannot be initialised in forked children; the recipe uses spawn, so the test does too.
    previous = multiprocess.get_start_method(allow_none=True)
    multiprocess.set_start_method("spawn", force=True)
    yield
    multiprocess.set_start_method(previous, force=True)


def _rows(n: int) -> list[dict]:
    return [
        {
            "instruction": f"Question {i}: what comes after {i}?",
            "input": "" if i % 2 else "Answer briefly.",
            "output": f"{i + 1}" + " because counting" * (i % 5),
        }
        for i in range(n)
    ]


@pytest.mark.multiproc
def test_map_with_rank_num_proc_2_equals_single_process(tiny_model_dir, spawn_start_method):
    from datasets import Dataset

    from hf_selectit import SelectITScorer

    ds = Dataset.from_list(_rows(13))
    scorer = SelectITScorer(model=str(tiny_model_dir), max_batch_tokens=512)
    single = ds.map(scorer, batched=True, batch_size=4)
    multi = ds.map(scorer, batched=True, batch_size=4, with_rank=True, num_proc=2)

    assert len(multi) == len(ds) == 13
    assert multi.column_names == single.column_names
    # Order preserved: the input columns come back in the original order.
    assert multi["instruction"] == ds["instruction"]
    assert multi["selectit_status"] == single["selectit_status"] == ["ok"] * 13
    for column in ("selectit_sentence_score", "selectit_uncertainty", "selectit_token_scores",
                   "selectit_rating_probs"):
        # Rows are grouped into different micro-batches per process; float32 rounding then
        # moves scores by ~1e-6. 1e-5 is the bar for batch-size independence.
        np.testing.assert_allclose(np.asarray(multi[column], dtype=float),
                                   np.asarray(single[column], dtype=float), rtol=0, atol=1e-5,
                                   err_msg=column)
    # Scores differ between rows (an all-equal column would make the comparison above vacuous).
    assert len(set(np.round(single["selectit_sentence_score"], 9))) > 1


@pytest.mark.multiproc
def test_local_engine_with_num_proc_2_equals_one_process(tmp_path, tiny_model_dir, spawn_start_method):
    from datasets import Dataset

    from hf_selectit.config import RunOptions, ScorerConfig
    from hf_selectit.pipeline import score_dataset

    ds = Dataset.from_list(_rows(9))
    cfg = ScorerConfig(model=str(tiny_model_dir), prompts=2, max_batch_tokens=512)
    one, _ = score_dataset(ds, cfg, run=RunOptions(shard_rows=5, batch_size=2), work_dir=tmp_path / "one")
    two, stats = score_dataset(ds, cfg, run=RunOptions(shard_rows=5, batch_size=2, num_proc=2),
                               work_dir=tmp_path / "two")
    assert (stats.processes, stats.shards_scored, stats.rows_scored) == (2, 2, 9)
    assert two["instruction"] == ds["instruction"] and two["selectit_status"] == one["selectit_status"]
    np.testing.assert_allclose(two["selectit_sentence_score"], one["selectit_sentence_score"], rtol=0, atol=1e-5)
