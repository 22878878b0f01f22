"""What the command line prints: the console (--quiet), its log lines, an error as one line in
command-line terms, progress and the end-of-run summary, the selection report files. Only the
CLI (and scripts through it) prints; the library logs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from collections import Counter
from dataclasses import fields
from typing import Any, Callable

from . import options as opt
from .atomic import write_text
from .config import (METHOD_CONFIGS, FusionConfig, IOConfig, PublishConfig, RayConfig, ReportOptions,
                     RunOptions, ScorerConfig, SelectConfig)
from .errors import ConfigError, SchemaError, ScoreColumnError, SelectITError, VersionExistsError
from .redaction import redact

PACKAGE_LOGGER = "hf_selectit"


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
        total, kept = Counter(scored["kind"]), Counter(subset["kind"])
        console.info("  kept by kind       " + ", ".join(f"{k} {kept.get(k, 0)}/{n}" for k, n in sorted(total.items())))
    where = summary.published or summary.subset_output or summary.output
    kept = f", kept {summary.kept}" if summary.kept is not None else ""
    console.final(f"done: {summary.rows} rows{kept}" + (f" -> {where}" if where else ""))
    return 0


def print_summary(summary: Any) -> None:
    """Print the end-of-run summary of a RunSummary (not with --quiet)."""
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
        why = f"; the IFD cut-off at 1 dropped {summary.rows_cut} row(s) first" if summary.rows_cut else ""
        lines.append(f"  kept               {summary.kept} (by {summary.select_column}{why})")
    v = summary.validation
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
    outputs = (("scored dataset", summary.output), ("subset", summary.subset_output),
               ("published", summary.published))
    lines += [f"  {label:<18} {value}" for label, value in outputs if value]
    console.info("\n".join(lines))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (not at set-up), as
    logging's own last-resort handler does."""

    stream = property(lambda self: sys.stderr)  # type: ignore[assignment]

    def __init__(self) -> None:
        logging.Handler.__init__(self)  # StreamHandler's would assign the stream
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))  # a log line never shows a token


def configure_logging(verbose: int, *, quiet: bool) -> None:
    """WARNING for everyone; -v/-vv raise only hf-selectit's loggers; --quiet: errors only."""
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        root.addHandler(_StderrHandler())
    root.setLevel(logging.ERROR if quiet else logging.WARNING)
    # Only this package's loggers get louder; others (matplotlib's font manager, ...) stay at
    # WARNING. NOTSET: inherit the root's level.
    ours = logging.getLogger(PACKAGE_LOGGER)
    ours.setLevel(logging.NOTSET if quiet or not verbose else logging.WARNING - 10 * min(verbose, 2))


# Errors the user fixes by changing the command (exit 2); VersionExistsError: pass --overwrite or
# another --version.
USER_ERRORS = (ConfigError, SchemaError, ScoreColumnError, VersionExistsError)


def guarded(command: str, job: Callable[[], int], *, debug: bool) -> int:
    try:
        return job()
    except USER_ERRORS as exc:
        return report_error(command, exc, code=2, debug=debug)
    except (SelectITError, OSError) as exc:
        # OSError: a file the package did not wrap (a report path in a missing folder, ...): one
        # line naming the file and the cause, as for the package's own OutputWriteError.
        return report_error(command, exc, code=1, debug=debug)


def report_error(command: str, exc: BaseException, *, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    kind = "error" if code == 2 else type(exc).__name__
    text = " ".join(redact(cli_terms(str(exc))).split())  # one line, and never a token
    print(f"hf-selectit {command}: {kind}: {text}", file=sys.stderr)
    return code


_CARD_LICENSE = re.compile(r"card_data=\{\s*'license':\s*'([^']*)'\s*\}")
# An option name followed by "=", not already labelled (--x=, file.yaml: x=, section.x=).
_KWARG = re.compile(r"(?<![\w\-.:\[])(?<!: )([a-z_][a-z0-9_]*)=(True|False|\.\.\.)?")


def cli_terms(message: str) -> str:
    """A message written for Python callers, in command-line terms.

    ``overwrite=True`` -> ``--overwrite``; ``card_data={'license': 'x'}`` -> ``--license x``;
    ``source=...`` -> ``--source``; ``ratio=2`` -> ``--ratio=2`` (for option names only).
    Values already labelled by the loader (``--ratio=...``, ``run.yaml: select.ratio=...``)
    are left alone.
    """
    message = _CARD_LICENSE.sub(lambda m: f"--license {m.group(1)}", message)
    flags: dict = {}
    for cls in (*METHOD_CONFIGS.values(), IOConfig, RunOptions, RayConfig, SelectConfig, PublishConfig,
                ReportOptions, FusionConfig, ScorerConfig):
        for f in fields(cls):
            flags.setdefault(f.name, opt.flag_of(cls, f.name))

    def swap(m: "re.Match[str]") -> str:
        flag = flags.get(m.group(1))
        if flag is None:
            return m.group(0)
        return {"True": flag, "False": "--no-" + flag[2:], "...": flag + " ..."}.get(m.group(2), flag + "=")

    return _KWARG.sub(swap, message)
