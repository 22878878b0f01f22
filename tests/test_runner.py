"""The local engine and the checkpoints both engines share (hf_selectit.runner): completion
files checked before use, resume after a kill, one writer per output, progress per micro-batch,
leftovers. (The Ray engine's tests are in test_ray.py.)

Scores come from the tiny in-process Llama (tests/tiny_lm.py); a model-free scorer checks that
the runner works for any object with the scorer interface. Killed runs are real subprocesses
killed with SIGKILL; what they did is read from the public summary JSON and the completion files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from hf_selectit.errors import OutputLockedError
from hf_selectit.pipeline import RunOptions, score_dataset
from hf_selectit.progress import ProgressEvent, TqdmProgress
from hf_selectit.runner import default_work_dir, output_lock

SCORE_COLUMNS = ("selectit_sentence_score", "selectit_uncertainty", "selectit_token_scores",
                 "selectit_rating_probs")


def _rows(n: int) -> list[dict]:
    return [
        {"instruction": f"Write the number {i} in words.", "input": "" if i % 4 else "plain English",
         "output": f"The number is {i}." + " Really." * (i % 3), "kind": "good" if i % 3 else "wrong"}
        for i in range(n)
    ]


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _plain_map(data: str, model_dir, **scorer_kwargs):
    """The reference: an uninterrupted single-process `Dataset.map` of the same scorer."""
    import datasets

    from hf_selectit import SelectITScorer

    source = datasets.load_dataset("json", data_files=data, split="train")
    return source.map(SelectITScorer(model=str(model_dir), **scorer_kwargs), batched=True,
                      batch_size=4, load_from_cache_file=False)


def _assert_same(result, reference, atol=1e-5):
    assert result.column_names == reference.column_names
    assert result["instruction"] == reference["instruction"]  # same rows, same order
    assert result["selectit_status"] == reference["selectit_status"]
    for column in SCORE_COLUMNS:
        np.testing.assert_allclose(np.asarray(result[column], dtype=float),
                                   np.asarray(reference[column], dtype=float), rtol=0, atol=atol,
                                   err_msg=column)


def _parts(work: Path) -> dict[str, Path]:
    return {p.name: p for p in work.glob("*/part-*.parquet")}


def _cli(*args: str, **kwargs) -> list[str]:
    return [sys.executable, "-m", "hf_selectit.cli", *args]


# -------------------------------------------------------------- a scorer without a model


@dataclass
class CountConfig:
    column_prefix: str = "count_"
    factor: float = 1.0


class CountingScorer:
    """The scorer interface without a model: characters per response, one progress step per row."""

    def __init__(self, factor: float = 1.0) -> None:
        self.config = CountConfig(factor=factor)

    @property
    def output_columns(self) -> list[str]:
        return ["count_score", "count_status"]

    def __call__(self, batch: dict, rank=None) -> dict:
        from hf_selectit import progress

        out: dict = {"count_score": [], "count_status": []}
        for text in batch["output"]:
            out["count_score"].append(len(text) * self.config.factor)
            out["count_status"].append("ok" if "7" not in text else "error: seven")
            progress.advance(1)
        return out

    def info(self, rank=None) -> dict:
        return {"method": "count", "column_prefix": "count_", "factor": self.config.factor}


def test_any_scorer_progress_per_micro_batch_and_resumed_labelled(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list(_rows(10))
    events: list[ProgressEvent] = []
    run = RunOptions(shard_rows=4, batch_size=2, keep_checkpoints=True)
    scored, stats = score_dataset(ds, CountingScorer(), run=run, work_dir=tmp_path / "w",
                                  on_progress=events.append)
    assert scored["count_score"] == [float(len(r["output"])) for r in _rows(10)]
    assert (stats.rows, stats.rows_scored, stats.rows_resumed) == (10, 10, 0)
    assert (stats.ok, stats.errors) == (9, 1)  # counted from the scorer's own status column
    # One event per row the scorer reported, inside each shard; nothing left for shard ends.
    assert [e.kind for e in events].count("rows") == 10
    assert sum(e.rows for e in events if e.kind == "shard") == 0
    assert events[0].kind == "plan" and events[0].rows == 10 and events[0].resumed == 0
    assert [e.n_shards for e in events if e.kind == "start"] == [3, 3, 3]

    events.clear()
    again, stats2 = score_dataset(ds, CountingScorer(), run=run, work_dir=tmp_path / "w",
                                  on_progress=events.append)
    assert (stats2.rows_scored, stats2.rows_resumed, stats2.shards_resumed) == (0, 10, 3)
    assert [e.kind for e in events] == ["plan", "merged"]
    assert events[0].rows == 0 and events[0].resumed == 10
    assert again["count_score"] == scored["count_score"]

    # Another config of the same scorer is another set of checkpoints.
    _, stats3 = score_dataset(ds, CountingScorer(factor=2.0), run=run, work_dir=tmp_path / "w")
    assert stats3.rows_scored == 10


def test_tqdm_bar_counts_scored_rows_and_labels_resumed(tmp_path):
    import io

    import datasets

    ds = datasets.Dataset.from_list(_rows(6))
    run = RunOptions(shard_rows=3, batch_size=1, keep_checkpoints=True)
    score_dataset(ds, CountingScorer(), run=run, work_dir=tmp_path / "w2")
    out = io.StringIO()
    bar = TqdmProgress(file=out)
    score_dataset(ds, CountingScorer(), run=run, work_dir=tmp_path / "w2", on_progress=bar)
    text = out.getvalue()
    assert "6 rows resumed from checkpoints" in text and "row/s" in text
    assert bar.bar is None  # closed once the last model's pass was merged

    out = io.StringIO()
    bar = TqdmProgress(file=out)
    score_dataset(ds, CountingScorer(factor=3.0), run=run, work_dir=tmp_path / "w2", on_progress=bar)
    final = out.getvalue().split("\r")[-1]
    assert "6/6" in final and "resumed" not in final


# ------------------------------------------------------------------- checkpoints checked


def test_unusable_checkpoints_are_rescored_with_one_warning_each(tmp_path, tiny_model_dir, caplog):
    """Truncate, empty, delete, duplicate a part and copy in another config's part: each unusable
    one is deleted with one warning naming it, never merged; the result equals the plain map."""
    from hf_selectit.config import ScorerConfig
    from hf_selectit.io import load_input

    data = _write_jsonl(tmp_path / "d.jsonl", _rows(18))
    ds = load_input(data)
    cfg = ScorerConfig(model=str(tiny_model_dir), prompts=2)
    run = RunOptions(shard_rows=3, batch_size=4, keep_checkpoints=True)
    work = tmp_path / "work"
    first, _ = score_dataset(ds, cfg, run=run, work_dir=work)
    other, _ = score_dataset(ds, ScorerConfig(model=str(tiny_model_dir), prompts=2, alpha=0.5), run=run,
                             work_dir=tmp_path / "other")
    parts = sorted(_parts(work).values())
    assert len(parts) == 6
    parts[0].write_bytes(parts[0].read_bytes()[: parts[0].stat().st_size // 2])    # truncated
    parts[1].write_bytes(b"")                                                     # empty
    parts[2].unlink()                                                             # deleted
    shutil.copy(parts[3], parts[3].with_name("part-copy-00001.parquet"))          # the same rows twice
    foreign = sorted(_parts(tmp_path / "other").values())[4]
    parts[4].unlink()
    shutil.copy(foreign, parts[4])                                                # another config's

    caplog.set_level(logging.WARNING, logger="hf_selectit")
    again, stats = score_dataset(ds, cfg, run=run, work_dir=work)
    warnings = [r.getMessage() for r in caplog.records if r.name == "hf_selectit.runner"]
    assert len(warnings) == 4, warnings
    assert parts[0].name in warnings[0] and "unreadable" in warnings[0]
    assert parts[1].name in warnings[1] and "unreadable" in warnings[1]
    assert parts[4].name in warnings[2] and "another scoring config" in warnings[2]
    assert "part-copy-00001.parquet" in warnings[3] and "another checkpoint holds" in warnings[3]
    assert (stats.rows_resumed, stats.rows_scored) == (6, 12)  # parts 3 and 5 were kept
    assert (stats.shards_resumed, len(stats.shards_rescored)) == (2, 4)
    _assert_same(again, first, atol=1e-6)
    _assert_same(again, _plain_map(data, tiny_model_dir, prompts=2))
    assert other["selectit_sentence_score"] != again["selectit_sentence_score"]


# ------------------------------------------------------------------------ kill and resume


def test_killed_run_resumes_without_rescoring(tmp_path, tiny_model_dir):
    """Kill a real `hf-selectit score` with SIGKILL after a few shards; the restart scores only
    the remaining shards and its output equals a plain, uninterrupted Dataset.map."""
    import datasets

    n_rows, shard_rows = 96, 3
    n_shards = n_rows // shard_rows
    data = _write_jsonl(tmp_path / "d.jsonl", _rows(n_rows))
    out = tmp_path / "scored"
    work = default_work_dir(out)
    summary = tmp_path / "summary.json"
    cmd = _cli("score", data, "--model", str(tiny_model_dir), "--output", str(out), "--shard-rows",
               str(shard_rows), "--batch-size", str(shard_rows), "--summary-json", str(summary))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while len(_parts(work)) < 3:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "state.json").exists() and not summary.exists()  # killed part-way
    done_before = _parts(work)
    k = len(done_before)
    assert 3 <= k < n_shards
    records = {name: p.read_bytes() for name, p in done_before.items()}

    # The restart finds the dead run's lock and takes it over.
    rerun = subprocess.run([*cmd, "--keep-checkpoints"], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Taking over the lock" in rerun.stderr
    stats = json.loads(summary.read_text())["models"][0]
    assert stats["shards_resumed"] == k and stats["shards_scored"] == n_shards - k
    assert stats["rows_resumed"] == k * shard_rows and stats["rows_scored"] == n_rows - k * shard_rows
    assert f"{k * shard_rows} from checkpoints" in rerun.stdout
    # The finished parts were read, not rewritten; no half-written part is left.
    assert {name: p.read_bytes() for name, p in _parts(work).items() if name in records} == records
    assert len(_parts(work)) == n_shards and not list(work.glob("*/.*.selectit-new-*"))

    _assert_same(datasets.load_from_disk(str(out)), _plain_map(data, tiny_model_dir))


# ---------------------------------------------------------------------- one writer per output


def test_lock_of_a_live_run_fails_at_once_and_a_dead_ones_is_taken_over(tmp_path, caplog):
    work = tmp_path / "out.selectit-work"
    work.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        (work / "LOCK").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                               "started": "2026-01-01T00:00:00+0000"}))
        with pytest.raises(OutputLockedError) as info:
            with output_lock(work, what="out"):
                pass
        message = str(info.value)
        assert f"pid {holder.pid}" in message and socket.gethostname() in message
        assert "2026-01-01T00:00:00" in message and "out" in message
    finally:
        holder.kill()
        holder.wait()
    caplog.set_level(logging.WARNING, logger="hf_selectit")
    with output_lock(work) as path:  # the holder is gone now
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert "Taking over the lock" in caplog.text
    assert not work.exists()  # released and cleaned up


def test_two_concurrent_cli_runs_on_one_output(tmp_path, tiny_model_dir):
    """A second run on an output that a live run holds fails at once naming the holder; the
    first finishes with its own scores and its own provenance (no mixing of configs)."""
    import datasets

    from hf_selectit.provenance import scorer_infos

    data = _write_jsonl(tmp_path / "d.jsonl", _rows(60))
    out = tmp_path / "scored.parquet"
    work = default_work_dir(out)
    first = subprocess.Popen(_cli("score", data, "--model", str(tiny_model_dir), "--output", str(out),
                                  "--shard-rows", "2", "--batch-size", "2", "--alpha", "0.2",
                                  "--output-format", "disk"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not (work / "LOCK").exists():
            assert first.poll() is None, first.communicate()
            time.sleep(0.02)
        second = subprocess.run(_cli("score", data, "--model", str(tiny_model_dir), "--output", str(out),
                                     "--alpha", "0.5", "--output-format", "disk"),
                                capture_output=True, text=True, timeout=600)
        stdout, stderr = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.returncode == 1 and "OutputLockedError" in second.stderr
    assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    assert first.returncode == 0, stderr[-3000:]
    scored = datasets.load_from_disk(str(out))
    assert scorer_infos(scored)["selectit_"]["alpha"] == 0.2
    reference = _plain_map(data, tiny_model_dir, alpha=0.2)
    _assert_same(scored, reference)
    assert not work.exists()


# ------------------------------------------------------------------------------- leftovers


def test_checkpoints_live_beside_the_output_and_go_after_success(tmp_path, tiny_model_dir):
    data = _write_jsonl(tmp_path / "d.jsonl", _rows(5))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = tmp_path / "runs" / "scored.jsonl"
    base = _cli("score", data, "--model", str(tiny_model_dir), "--prompts", "2", "--output", str(out),
                "--shard-rows", "2")
    done = subprocess.run(base, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # The data and its provenance (hf_selectit.provenance sidecar), no checkpoints.
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == [
        "scored.jsonl", "scored.jsonl.selectit.json"]
    assert not list(cwd.iterdir())  # nothing in the current directory

    kept = subprocess.run([*base, "--keep-checkpoints"], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert kept.returncode == 0, kept.stderr[-3000:]
    work = out.parent / "scored.jsonl.selectit-work"
    assert len(_parts(work)) == 3 and not (work / "LOCK").exists()
    assert not list(cwd.iterdir())
