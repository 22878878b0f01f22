"""Benchmark of the selection step on a 1,000,000-row scored dataset.

Builds a synthetic scored dataset (scores rounded to 3 decimals, so ties are everywhere; 1% NaN
scores; 0.5% error rows; short instruction/response texts; 10 groups), saves it with
``save_to_disk`` and memory-maps it back (as a real scored dataset would be), then times

- ``select_top(ratio=0.2)`` with ``order="original"`` and ``order="score"``, and with ``by=``;
- ``select_random(ratio=0.2)`` and ``selection_report``;
- two naive baselines in the same run: ``ds.to_pandas().sort_values(...)`` and Python's
  ``sorted`` over the score list, each followed by ``ds.select``.

Every baseline's kept indices are checked against ``select_top``'s. Prints seconds, rows/s,
the baseline/select_top time ratio and the peak RSS after each step.

Usage:
    .venv/bin/python scripts/bench_select.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import resource
import tempfile
import time

import numpy as np


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def timed(fn, repeat):
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def build(n_rows: int, seed: int = 0):
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    scores = np.round(rng.uniform(0, 5, n_rows), 3)
    scores[rng.random(n_rows) < 0.01] = np.nan
    status = np.where(rng.random(n_rows) < 0.005, "error: out of memory", "ok")
    lengths = rng.integers(5, 60, n_rows)
    return Dataset.from_dict({
        "instruction": [f"Do task {i}." for i in range(n_rows)],
        "output": ["x" * int(n) for n in lengths],
        "source": [f"s{i % 10}" for i in range(n_rows)],
        "selectit_sentence_score": scores,
        "selectit_status": status.tolist(),
    })


def build_to_disk(n_rows: int, path: str) -> None:
    import datasets

    datasets.disable_progress_bars()
    build(n_rows).save_to_disk(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()

    import datasets
    from datasets import load_from_disk

    from hf_selectit import select_random, select_top, selection_report

    datasets.disable_progress_bars()
    # select_top logs the excluded-row counts once per call; the summary line below has them.
    logging.getLogger("hf_selectit").setLevel(logging.ERROR)
    column = "selectit_sentence_score"
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        # Built in a child process so that the peak RSS below is the selection's, not the
        # Python lists the synthetic data was made from.
        child = multiprocessing.get_context("spawn").Process(target=build_to_disk, args=(args.rows, tmp))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"building the dataset failed (exit code {child.exitcode})")
        ds = load_from_disk(tmp)
        n = len(ds)
        print(f"dataset: {n:,} rows on disk (memory-mapped), built in {time.perf_counter() - start:.1f} s; "
              f"peak RSS after loading {peak_rss_mib():.0f} MiB")

        results = {}

        def report(name, seconds, kept=None, ref=None):
            ratio = "" if ref is None else f"  ({seconds / ref:.1f}x select_top order=original)"
            kept_text = "" if kept is None else f"  kept {kept:,}"
            print(f"{name:<44} {seconds:8.3f} s  {n / seconds:>14,.0f} rows/s{kept_text}{ratio}"
                  f"  peak RSS {peak_rss_mib():.0f} MiB")
            results[name] = seconds

        t_orig, sub_orig = timed(lambda: select_top(ds, ratio=0.2), args.repeat)
        report("select_top ratio=0.2 order=original", t_orig, len(sub_orig))
        t_score, sub_score = timed(lambda: select_top(ds, ratio=0.2, order="score"), args.repeat)
        report("select_top ratio=0.2 order=score", t_score, len(sub_score), t_orig)
        t_by, sub_by = timed(lambda: select_top(ds, ratio=0.2, by="source"), args.repeat)
        report("select_top ratio=0.2 by=source", t_by, len(sub_by), t_orig)
        t_rand, sub_rand = timed(lambda: select_random(ds, ratio=0.2), args.repeat)
        report("select_random ratio=0.2", t_rand, len(sub_rand), t_orig)
        t_rep, rep = timed(lambda: selection_report(ds, sub_orig), 1)
        report("selection_report (incl. text lengths)", t_rep, None, t_orig)

        # Which rows were kept, in order: every instruction is unique ("Do task {i}.").
        expected = sub_score["instruction"]
        quota = int(n * 0.2)

        def pandas_baseline():
            df = ds.to_pandas()
            df["_index"] = np.arange(len(df))
            df = df[~df["selectit_status"].str.startswith("error") & df[column].notna()]
            top = df.sort_values([column, "_index"], ascending=False).head(quota)
            return ds.select(top["_index"].to_numpy())

        t_pd, sub_pd = timed(pandas_baseline, 1)
        report("baseline: to_pandas + sort_values + select", t_pd, len(sub_pd), t_orig)
        assert sub_pd["instruction"] == expected, "pandas disagrees"

        def python_baseline():
            scores = ds.with_format("arrow")[column].to_pylist()
            status = ds.with_format("arrow")["selectit_status"].to_pylist()
            valid = [i for i in range(len(scores))
                     if scores[i] is not None and not math.isnan(scores[i]) and not status[i].startswith("error")]
            top = sorted(valid, key=lambda i: (scores[i], i), reverse=True)[:quota]
            return ds.select(top)

        t_py, sub_py = timed(python_baseline, 1)
        report("baseline: Python sorted over rows + select", t_py, len(sub_py), t_orig)
        assert sub_py["instruction"] == expected, "sorted disagrees"

        print(f"all baselines keep the same {quota:,} rows as select_top; "
              f"report: {rep.excluded}, kept p50 {rep.scores['kept']['p50']:.3f} "
              f"vs all {rep.scores['all']['p50']:.3f}")


if __name__ == "__main__":
    main()
