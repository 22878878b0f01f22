"""The one sharded runner (hf_selectit.runner): checkpoints verified by content, resume after a
kill, one writer per output, progress per micro-batch, leftovers, and the same code path under
`torchrun` (two gloo ranks on CPU).

Scores come from the tiny in-process Llama (tests/tiny_lm.py); a model-free scorer checks that
the runner works for any object with the scorer interface. Killed runs are real subprocesses
killed with SIGKILL; what they did is read from the public summary JSON and the marker files.
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
from hf_selectit.runner import ProgressEvent, TqdmProgress, default_work_dir, output_lock

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


def _markers(work: Path) -> dict[str, Path]:
    return {p.name: p for p in work.glob("*/shard-*.json")}


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

    events.clear()
    again, stats2 = score_dataset(ds, CountingScorer(), run=run, work_dir=tmp_path / "w",
                                  on_progress=events.append)
    assert (stats2.rows_scored, stats2.rows_resumed, stats2.shards_resumed) == (0, 10, 3)
    assert [e.kind for e in events] == ["plan", "resumed", "resumed", "resumed", "merged"]
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


# ------------------------------------------------------------------- checkpoints by content


def _arrow_file(shard_dir: Path) -> Path:
    return next(shard_dir.glob("*.arrow"))


def test_tampered_checkpoints_are_rescored_with_one_warning_each(tmp_path, tiny_model_dir, caplog):
    """Truncate, empty, delete and swap shards: each is scored again with one warning naming it,
    never merged; the result equals the uninterrupted run."""
    from hf_selectit.config import ScorerConfig
    from hf_selectit.io import load_input

    data = _write_jsonl(tmp_path / "d.jsonl", _rows(24))
    ds = load_input(data)
    cfg = ScorerConfig(model=str(tiny_model_dir), prompts=2)
    run = RunOptions(shard_rows=3, batch_size=4, keep_checkpoints=True)
    work = tmp_path / "work"
    first, _ = score_dataset(ds, cfg, run=run, work_dir=work)
    (root,) = [p for p in work.iterdir() if p.is_dir()]
    shard = lambda i: root / f"shard-{i:05d}"  # noqa: E731

    arrow = _arrow_file(shard(0))
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])  # truncated
    _arrow_file(shard(1)).write_bytes(b"")                              # empty
    shutil.rmtree(shard(2))                                             # deleted
    for a, b in ((3, 4),):                                              # data swapped (same rows)
        shard(a).rename(root / "x")
        shard(b).rename(shard(a))
        (root / "x").rename(shard(b))
    for suffix in ("", ".json"):                                        # shard + marker swapped
        p, q = Path(f"{shard(5)}{suffix}"), Path(f"{shard(6)}{suffix}")
        p.rename(root / "x")
        q.rename(p)
        (root / "x").rename(q)

    caplog.set_level(logging.WARNING, logger="hf_selectit")
    again, stats = score_dataset(ds, cfg, run=run, work_dir=work)
    warnings = [r.getMessage() for r in caplog.records if r.name == "hf_selectit.runner"]
    assert len(warnings) == 7, warnings
    for i in range(7):
        assert sum(f"shard {i} (rows {3 * i}-{3 * i + 2})" in w for w in warnings) == 1, (i, warnings)
    assert "truncated" in warnings[0] and "empty" in warnings[1] and "missing its data" in warnings[2]
    assert "sha256" in warnings[3] and "other input rows" in warnings[5]
    assert stats.shards_rescored == list(range(7))
    assert (stats.shards_scored, stats.shards_resumed) == (7, 1)
    _assert_same(again, first, atol=1e-6)
    _assert_same(again, _plain_map(data, tiny_model_dir, prompts=2))


def test_checkpoint_of_another_config_is_not_merged(tmp_path, tiny_model_dir, caplog):
    from hf_selectit.config import ScorerConfig
    from hf_selectit.io import load_input

    ds = load_input(_write_jsonl(tmp_path / "d.jsonl", _rows(6)))
    run = RunOptions(shard_rows=3, batch_size=4, keep_checkpoints=True)
    work = tmp_path / "work"
    a, b = ScorerConfig(model=str(tiny_model_dir), prompts=2), ScorerConfig(model=str(tiny_model_dir), prompts=2, alpha=0.5)
    score_dataset(ds, a, run=run, work_dir=work)
    (root_a,) = [p for p in work.iterdir() if p.is_dir()]
    scored_b, _ = score_dataset(ds, b, run=run, work_dir=work)
    (root_b,) = [p for p in work.iterdir() if p.is_dir() and p != root_a]
    for name in ("shard-00000", "shard-00000.json"):  # config a's shard put in b's place
        target = root_b / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        src = root_a / name
        shutil.copytree(src, target) if src.is_dir() else shutil.copy(src, target)
    caplog.set_level(logging.WARNING, logger="hf_selectit")
    again, stats = score_dataset(ds, b, run=run, work_dir=work)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "hf_selectit.runner"]
    assert "shard 0 (rows 0-2)" in warning and "another scoring config" in warning
    assert (stats.shards_scored, stats.shards_resumed) == (1, 1)
    assert again["selectit_sentence_score"] == pytest.approx(scored_b["selectit_sentence_score"], abs=1e-6)


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
        while len(_markers(work)) < 3:
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
    done_before = _markers(work)
    k = len(done_before)
    assert 3 <= k < n_shards
    records = {name: p.read_text() for name, p in done_before.items()}

    # The restart finds the dead run's lock and takes it over.
    rerun = subprocess.run([*cmd, "--keep-checkpoints"], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Taking over the lock" in rerun.stderr
    stats = json.loads(summary.read_text())["models"][0]
    assert stats["shards_resumed"] == k and stats["shards_scored"] == n_shards - k
    assert stats["rows_resumed"] == k * shard_rows and stats["rows_scored"] == n_rows - k * shard_rows
    assert f"{k * shard_rows} from checkpoints" in rerun.stdout
    # The finished shards were read, not rewritten (their markers are those of the first run).
    assert {name: p.read_text() for name, p in _markers(work).items() if name in records} == records
    assert len(_markers(work)) == n_shards and not list(work.glob("*/.*.selectit-new-*"))

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
    assert len(_markers(work)) == 3 and not (work / "LOCK").exists()
    assert not list(cwd.iterdir())


# ------------------------------------------------------------------------ several processes


def _torchrun(*args: str) -> list[str]:
    # `torchrun` itself, started through this interpreter (the console script may not exist in
    # a venv that reuses another one's packages).
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _each_rank_finished(work: Path, n: int) -> bool:
    ranks = [json.loads(p.read_text())["rank"] for p in _markers(work).values()]
    return all(ranks.count(r) >= n for r in (0, 1))


def _kill_tree(pid: int) -> None:
    import psutil

    try:
        parent = psutil.Process(pid)
        children = parent.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for process in [*children, parent]:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(children, timeout=60)


@pytest.mark.multiproc
def test_torchrun_killed_and_restarted_equals_single_process(tmp_path, tiny_model_dir):
    """Two gloo ranks on CPU: SIGKILL both part-way, restart; only unfinished shards are scored
    (by both ranks), and the merged result equals an uninterrupted single-process run."""
    import datasets

    n_rows, shard_rows = 60, 2
    n_shards = n_rows // shard_rows
    data = _write_jsonl(tmp_path / "d.jsonl", _rows(n_rows))
    out = tmp_path / "scored"
    work = default_work_dir(out)
    summary = tmp_path / "summary.json"
    score = ["-m", "hf_selectit.cli", "score", data, "--model", str(tiny_model_dir), "--output",
             str(out), "--shard-rows", str(shard_rows), "--batch-size", "2", "--max-batch-tokens",
             "512", "--summary-json", str(summary), "--distributed"]
    proc = subprocess.Popen(_torchrun(*score), env=_ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while not _each_rank_finished(work, 2):
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        _kill_tree(proc.pid)  # both ranks (torchrun starts them in sessions of their own), then it
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            _kill_tree(proc.pid)
            proc.wait()
    before = {name: p.read_text() for name, p in _markers(work).items()}
    k = len(before)
    assert 4 <= k < n_shards and not summary.exists()  # killed part-way
    # Both ranks had written shards before the kill.
    assert {json.loads(text)["rank"] for text in before.values()} == {0, 1}

    rerun = subprocess.run(_torchrun(*score, "--keep-checkpoints"), env=_ENV, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-5000:]
    stats = json.loads(summary.read_text())["models"][0]
    assert stats["processes"] == 2
    assert (stats["shards_resumed"], stats["shards_scored"]) == (k, n_shards - k)
    assert stats["rows_resumed"] + stats["rows_scored"] == n_rows
    after = {name: json.loads(p.read_text()) for name, p in _markers(work).items()}
    assert len(after) == n_shards
    assert {name: p.read_text() for name, p in _markers(work).items() if name in before} == before
    new = [m for name, m in after.items() if name not in before]
    assert {m["rank"] for m in new} == {0, 1}  # the restart split the rest between both ranks

    _assert_same(datasets.load_from_disk(str(out)), _plain_map(data, tiny_model_dir, max_batch_tokens=512))


def test_score_distributed_single_process_equals_plain_map(tmp_path, tiny_model_dir):
    from hf_selectit.config import ScorerConfig
    from hf_selectit.distributed import score_distributed
    from hf_selectit.io import load_input
    from hf_selectit.provenance import scorer_infos

    data = _write_jsonl(tmp_path / "d.jsonl", _rows(7))
    merged = score_distributed(load_input(data), ScorerConfig(model=str(tiny_model_dir)),
                               output_dir=str(tmp_path / "run"), batch_size=4)
    _assert_same(merged, _plain_map(data, tiny_model_dir))
    assert "selectit_" in scorer_infos(merged)
    assert (tmp_path / "run" / "merged").is_dir() and not (tmp_path / "run" / "work").exists()


@pytest.mark.multiproc
def test_distributed_module_entry_point_under_torchrun(tmp_path, tiny_model_dir):
    import datasets

    data = _write_jsonl(tmp_path / "d.jsonl", _rows(11))
    out = tmp_path / "run"
    proc = subprocess.run(_torchrun("-m", "hf_selectit.distributed", "--input", data, "--output", str(out),
                                    "--model", str(tiny_model_dir), "--max-batch-tokens", "512",
                                    "--shard-rows", "3", "--batch-size", "5"),
                          env=_ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "rows scored        11 by 2 processes" in proc.stdout
    merged = datasets.load_from_disk(str(out / "merged"))
    _assert_same(merged, _plain_map(data, tiny_model_dir, max_batch_tokens=512))
    assert not (out / "work").exists()  # checkpoints removed after the merge


@pytest.mark.multiproc
def test_torchrun_run_with_two_models_equals_one_process(tmp_path, tiny_model_dir):
    """`hf-selectit run` with two models under torchrun: the ranks meet at each model's start,
    and the output and the summary are those of the same run in one process."""
    import datasets

    data = _write_jsonl(tmp_path / "d.jsonl", _rows(9))

    def config(name: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            f"input: {data}\noutput: {tmp_path / name}\nsummary_json: {tmp_path / name}.json\n"
            "shard_rows: 2\nbatch_size: 2\n"
            f"scorer: {{model: {tiny_model_dir}, prompts: 2, max_batch_tokens: 512}}\n"
            "models: [{alpha: 0.2, params: 1}, {alpha: 0.5, params: 3}]\n"
            "select: {k: 3}\n")
        return path

    one = subprocess.run(_cli("run", str(config("one"))), env=_ENV, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(_torchrun("-m", "hf_selectit.cli", "run", str(config("two"))), env=_ENV,
                         capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-5000:]
    a, b = datasets.load_from_disk(str(tmp_path / "one")), datasets.load_from_disk(str(tmp_path / "two"))
    assert a.column_names == b.column_names and a["instruction"] == b["instruction"]
    for column in ("selectit_m0_sentence_score", "selectit_m1_sentence_score", "selectit_model_score"):
        np.testing.assert_allclose(a[column], b[column], rtol=0, atol=1e-5, err_msg=column)
    s1, s2 = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert (s2["processes"], s1["processes"]) == (2, 1)
    for key in ("rows", "row_scores", "rows_scored", "rows_resumed", "kept", "errors", "truncated"):
        assert s1[key] == s2[key], key
    assert [m["shards_scored"] for m in s2["models"]] == [5, 5]
    assert "models             2 (9 rows x 2 = 18 row scores)" in two.stdout
    assert not (tmp_path / "two.selectit-work").exists()
