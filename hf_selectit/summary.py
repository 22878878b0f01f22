"""What the command line prints and writes around a run: progress, the end-of-run summary, the
selection report files. Only the CLI (and scripts through it) prints; the library logs.
"""

from __future__ import annotations

import json
from typing import Any

from .redaction import redact


class Console:
    """What the CLI prints: everything normally; with --quiet only errors and the final line."""

    quiet = False

    def info(self, text: str = "") -> None:
        if not self.quiet:
            print(redact(text))

    def final(self, text: str) -> None:
        print(redact(text))


console = Console()


def write_report(result: Any, report: Any) -> None:
    """Write a SelectionReport where ``report`` (ReportOptions) says: Markdown and/or JSON."""
    from .atomic import write_text

    if report.report:
        write_text(report.report, result.to_markdown())
    if report.report_json:
        write_text(report.report_json, json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str) + "\n")


def run_with_progress(config: Any) -> int:
    """Run a pipeline config with one progress bar, write its report, print its summary."""
    import datasets
    from tqdm.contrib.logging import logging_redirect_tqdm

    from .pipeline import run_pipeline
    from .progress import TqdmProgress

    # One bar (ours, rows of all shards and models) instead of datasets' bars; log lines are
    # printed above it instead of through it. --quiet: no bar.
    datasets.disable_progress_bars()
    bar = None if console.quiet else TqdmProgress()
    try:
        with logging_redirect_tqdm():
            summary, scored, subset = run_pipeline(config, on_progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if subset is not None and (config.report.report or config.report.report_json):
        from .pipeline import select_column_for
        from .report import selection_report

        column = select_column_for(config)
        write_report(selection_report(scored, subset, column=column, by=config.select.by), config.report)
    print_summary(summary)
    if subset is not None and "kind" in subset.column_names:
        # The demo's rows say what they are: show a curator what the scorer preferred.
        from collections import Counter

        total, kept = Counter(scored["kind"]), Counter(subset["kind"])
        console.info("  kept by kind       " + ", ".join(f"{k} {kept.get(k, 0)}/{n}" for k, n in sorted(total.items())))
    where = summary.published or summary.subset_output or summary.output
    kept = f", kept {summary.kept}" if summary.kept is not None else ""
    console.final(f"done: {summary.rows} rows{kept}" + (f" -> {where}" if where else ""))
    return 0


def summary_text(summary: Any) -> str:
    """The end-of-run summary of a RunSummary: rows scored, truncated, errors, kept, time, rows/s."""
    rate, n = summary.rows_per_second, len(summary.models)
    ray = any(m.engine == "ray" for m in summary.models)
    where = f" by {summary.processes} {'Ray actors' if ray else 'processes'}" if summary.processes > 1 or ray else ""
    resumed = f", {summary.rows_resumed} from checkpoints" if summary.rows_resumed else ""
    # Rows and rows x models are different numbers: with two models, 10 rows are 20 row scores.
    scoring = [f"  rows scored        {summary.rows_scored}{where}{resumed}"] if n == 1 else [
        f"  models             {n} ({summary.rows} rows x {n} = {summary.row_scores} row scores)",
        f"  row scores         {summary.rows_scored} computed{where}{resumed}"]
    lines = ["", "hf-selectit summary",  # not "SelectIT": the run may score with IFD, AlpaGasus, ...
             f"  rows               {summary.rows}", *scoring,
             f"  truncated          {summary.truncated}", f"  errors             {summary.errors}"]
    if summary.kept is not None:
        cut = getattr(summary, "rows_cut", 0)
        why = f"; the IFD cut-off at 1 dropped {cut} row(s) first" if cut else ""
        lines.append(f"  kept               {summary.kept} (by {summary.select_column}{why})")
    v = getattr(summary, "validation", None)
    if v and "skipped" in v:
        lines.append(f"  validation         skipped: {v['skipped']}")
    elif v:
        base = ", ".join(f"{k} {x:.3f}" for k, x in v["baselines"].items() if x is not None)
        lines.append(f"  validation         {v['headline']}; baselines: {base}")
    lines.append(f"  time               {summary.seconds:.1f} s (scoring {summary.scoring_seconds:.1f} s)")
    if rate:
        lines.append(f"  rows/s             {rate:.2f}" + (" (row scores of all models per second)" if n > 1 else ""))
    else:
        lines.append("  rows/s             - (nothing scored" + (": every row from checkpoints)" if summary.rows_resumed else ")"))
    for m in summary.models:
        resumed = f", {m.shards_resumed} resumed from checkpoints" if m.shards_resumed else ""
        redone = f", {len(m.shards_rescored)} invalid checkpoints rescored" if m.shards_rescored else ""
        lines.append(f"  model {m.model or 'embedded SmolLM2-135M-Instruct'} [{m.column_prefix}]: "
                     f"{m.shards_scored} of {m.shards} shards scored{resumed}{redone}")
    for label, value in (("scored dataset    ", summary.output), ("subset            ", summary.subset_output),
                         ("published         ", summary.published)):
        if value:
            lines.append(f"  {label} {value}")
    return "\n".join(lines)


def print_summary(summary: Any) -> None:
    """Print :func:`summary_text` (not with --quiet)."""
    console.info(summary_text(summary))
