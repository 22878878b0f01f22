"""score -> fuse -> select -> validate -> publish from one configuration (the engine behind the CLI).

Scoring is checkpointed (a killed run restarts where it stopped) and runs on ``run.engine``: ``local``
(one process or ``num_proc`` workers, :mod:`hf_selectit.runner`) or ``ray`` (a Ray cluster's actors,
:mod:`hf_selectit.ray_runner`). Heavy imports (datasets, torch, ray) happen inside functions.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

# Importable from here too: the configs, make_scorer, and the runner's ProgressEvent, ScoreStats, default_work_dir.
from .config import (DEFAULT_PREFIX, FUSED_COLUMN, FusionConfig, IOConfig, PipelineConfig,  # noqa: F401
                     PublishConfig, RayConfig, RunOptions, ScorerConfig, SelectConfig)
from .atomic import write_text
from .errors import ConfigError, OutputWriteError
from .io import check_output_path, is_local_path, load_input, resolve_output_format, save_output
from .methods import make_scorer
from .methods.columns import for_config
from .models import check_processes
from .options import load_run_config
from .plots import VALIDATION_PLOT_FILENAME
from .progress import ProgressCallback, ProgressEvent
from .redaction import redact_mapping
from .runner import ScoreStats, add_scores, default_work_dir, output_lock, remove_checkpoints, score_shards, score_with
from .select import fuse_models, select_top

load_pipeline_config = load_run_config  # the former name of the run-config loader
__all__ = ["ProgressEvent", "ScoreStats", "default_work_dir"]

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """The end-of-run numbers the CLI prints (and writes with ``--summary-json``). ``row_scores``
    is rows x models; ``rows_scored`` those computed by this run, ``rows_resumed`` those taken
    from checkpoints; ``rows_per_second`` is rows_scored over the models' scoring seconds;
    ``rows_cut`` the rows an IFD cut-off (IFD > 1, or >= 1) dropped before the ratio was taken."""

    rows: int = 0
    models: list = field(default_factory=list)
    kept: Optional[int] = None
    select_column: Optional[str] = None
    rows_cut: int = 0
    output: Optional[str] = None
    subset_output: Optional[str] = None
    published: Optional[str] = None
    seconds: float = 0.0
    processes: int = 1
    # The validate step's figure for the selection column (headline, value, interval, n).
    validation: Optional[dict] = None

    row_scores = property(lambda self: self.rows * len(self.models))
    rows_scored = property(lambda self: sum(m.rows_scored for m in self.models))
    rows_resumed = property(lambda self: sum(m.rows_resumed for m in self.models))
    truncated = property(lambda self: sum(m.truncated for m in self.models))
    errors = property(lambda self: sum(m.errors for m in self.models))
    scoring_seconds = property(lambda self: sum(m.seconds for m in self.models))

    @property
    def rows_per_second(self) -> Optional[float]:
        return self.rows_scored / self.scoring_seconds if self.rows_scored and self.scoring_seconds else None

    def to_dict(self) -> dict:
        properties = [name for name, value in vars(RunSummary).items() if isinstance(value, property)]
        return {**asdict(self), **{name: getattr(self, name) for name in properties}}


def engine_for(run: RunOptions, ray: Optional[RayConfig] = None) -> Callable[..., tuple]:
    """``run.engine``'s ``(ds, scorer, work_dir=..., ...) -> (scores, stats, info)``: this machine's
    :func:`hf_selectit.runner.score_shards` or a Ray cluster's :func:`hf_selectit.ray_runner.score_blocks`."""
    kwargs = dict(shard_rows=run.shard_rows, batch_size=run.batch_size)
    if run.engine == "ray":
        from .ray_runner import score_blocks

        return functools.partial(score_blocks, ray=ray or RayConfig(), **kwargs)
    return functools.partial(score_shards, num_proc=run.num_proc, **kwargs)


def score_dataset(ds: Any, scorer_config: Any, *, run: Optional[RunOptions] = None, ray: Optional[RayConfig] = None,
                  work_dir: Union[str, os.PathLike, None] = None, model_index: int = 0, n_models: int = 1,
                  on_progress: Optional[ProgressCallback] = None) -> tuple[Any, ScoreStats]:
    """``(ds + one scorer's columns and provenance, stats)``, checkpointed in ``work_dir`` on
    ``run.engine`` (:func:`hf_selectit.runner.score_with`); ``scorer_config`` may be a scorer. A
    ConfigError for an empty dataset or existing output columns, OutputLockedError when another
    live run holds ``work_dir``.

    Example:
        >>> scored, stats = score_dataset(ds, ScorerConfig(model="HuggingFaceTB/SmolLM2-135M-Instruct"))
    """
    run = run or RunOptions()
    return score_with(ds, make_scorer(scorer_config), engine_for(run, ray), work_dir=work_dir,
                      keep_checkpoints=run.keep_checkpoints, model_index=model_index, n_models=n_models,
                      on_progress=on_progress)


def select_column_for(config: PipelineConfig) -> str:
    """The score column selection ranks by: ``select.column`` when set, else the fused column
    with several SelectIT models, else the first model's score (its column schema's)."""
    if config.select is not None and config.select.column is not None:
        return config.select.column
    return config.fusion.output if len(_selectit_models(config)) > 1 else for_config(config.models[0]).score


def _selectit_models(config: PipelineConfig) -> list:
    """Indices of the SelectIT models of a run (the ones model-level fusion combines)."""
    return [i for i, m in enumerate(config.models) if isinstance(m, ScorerConfig)]


def fuse(ds: Any, config: PipelineConfig) -> Any:
    """Model-level fusion of the SelectIT models' sentence scores (several models only); other
    methods' columns stay as they are (select on any of them with select.column)."""
    chosen = _selectit_models(config)
    if config.fusion.weights is not None:
        kwargs = {"weights": config.fusion.weights}
    elif config.fusion.params is not None:
        kwargs = {"params": list(config.fusion.params)}
    else:  # the models' own parameter counts, when every one has one
        params = [config.model_params[i] for i in chosen] if config.model_params else []
        kwargs = {"params": params} if params and all(p is not None for p in params) else {}
    return fuse_models(ds, columns=[for_config(config.models[i]).score for i in chosen],
                       output=config.fusion.output, **kwargs)


def run_pipeline(config: PipelineConfig, *, on_progress: Optional[ProgressCallback] = None,
                 dataset: Any = None) -> tuple[RunSummary, Any, Any]:
    """Score with every model, fuse, select, write and publish, as ``config`` (from
    :func:`load_run_config`) says; ``on_progress`` receives every :class:`ProgressEvent`,
    ``dataset`` replaces ``config.io.input``. Returns ``(summary, scored, subset)``; ``subset``
    is None without ``config.select``.

    Example:
        >>> summary, scored, subset = run_pipeline(load_run_config("hf_selectit/configs/demo.yaml"))
    """
    t0 = time.perf_counter()
    io, run = config.io, config.run
    # Paths that cannot be written are refused now, not after hours of scoring.
    if io.output:
        check_output_path(io.output, output_format=output_format(config))
    if run.subset_output:
        check_output_path(run.subset_output, option="subset_output")
    if dataset is None:
        dataset = load_input(io.input, split=io.split, config_name=io.config_name, revision=io.revision)
    ds = dataset.select(range(io.limit)) if io.limit is not None and io.limit < len(dataset) else dataset
    if run.engine == "local":
        for scorer_config in config.models:  # a device_map model later in the list fails before any work
            check_processes(scorer_config, run.num_proc)
    summary, engine = RunSummary(rows=len(ds)), engine_for(run, config.ray)
    work_dir, lock_dir = _work_dirs(config)
    # One writer per output: the lock is held until the outputs are written.
    with output_lock(lock_dir, what=_target_name(config)):
        results = []
        for i, scorer_config in enumerate(config.models):
            scores, stats, info = engine(ds, make_scorer(scorer_config), work_dir=work_dir, model_index=i,
                                         n_models=len(config.models), on_progress=on_progress)
            summary.models.append(stats)
            results.append((scores, info))
        summary.processes = max(m.processes for m in summary.models)
        try:
            scored, subset = _finish(config, summary, add_scores(ds, results), work_dir)
        except OutputWriteError as exc:
            raise OutputWriteError(f"{exc} The scores are kept in {work_dir}: run the same command "
                                   "again once the cause is fixed, and it resumes from them.") from exc
        if not run.keep_checkpoints:
            remove_checkpoints(work_dir)
    summary.seconds = time.perf_counter() - t0
    if run.summary_json:
        write_text(run.summary_json, json.dumps(redact_mapping(summary.to_dict()), indent=2, default=str))
    return summary, scored, subset


def _work_dirs(config: PipelineConfig) -> tuple[Path, Path]:
    """A run's checkpoints folder (``run.work_dir`` if set, else beside the output or a local
    publish folder, else the user cache) and its lock's: the output's own work directory whatever
    ``run.work_dir`` says (so two runs on one output always meet there), else the checkpoints'."""
    target = _target_name(config)
    work_dir = Path(config.run.work_dir) if config.run.work_dir else default_work_dir(target)
    return work_dir, default_work_dir(target) if target else work_dir


def output_format(config: PipelineConfig) -> str:
    """The run's output format: ``io.output_format``, except that a folder output of a Ray run is
    parquet (+ selectit.json), which load_dataset, ray.data.read_parquet and every engine read."""
    fmt = config.io.output_format
    ray_folder = fmt == "auto" and config.run.engine == "ray" and resolve_output_format(config.io.output) == "disk"
    return "parquet" if ray_folder else fmt


def _target_name(config: PipelineConfig) -> Optional[str]:
    if config.io.output or config.publish is None or not config.publish.repo_id:
        return config.io.output or None
    from .publishing import is_local_target

    return config.publish.repo_id if is_local_target(config.publish.repo_id) else None


def _finish(config: PipelineConfig, summary: RunSummary, scored: Any, work_dir: Path) -> tuple[Any, Any]:
    """Fuse, validate, write, select and publish; returns ``(scored, subset)``."""
    io = config.io
    if len(_selectit_models(config)) > 1:
        scored = fuse(scored, config)
    if config.validate is not None:
        scored = _validate(config, summary, scored, work_dir)
    if io.output:
        save_output(scored, io.output, output_format=output_format(config))
        summary.output = io.output
    subset = None
    if config.select is not None:
        column = select_column_for(config)
        subset = select_top(scored, column=column, **config.select.rule())
        summary.kept, summary.select_column = len(subset), column
        summary.rows_cut = int(subset.selection.rule.get("rows_cut") or 0)
        if config.run.subset_output:
            save_output(subset, config.run.subset_output)
            summary.subset_output = config.run.subset_output
    if config.publish is not None:
        if subset is None:
            raise ConfigError("publish needs a selected subset: add a `select` section.")
        # The card names the source dataset (and its licence is read from the source's card).
        hub = io.input if io.input and not is_local_path(io.input) else None
        source = config.publish.source or (f"{hub}@{io.revision}" if hub and io.revision else hub)
        summary.published = publish_subset(subset, config.publish, scored=scored, source=source,
                                           card_data=config.card_data, run_config=config.config_file)
    return scored, subset


def _validate(config: PipelineConfig, summary: RunSummary, scored: Any, work_dir: Path) -> Any:
    """The run's ``validate:`` step: check the selection column against a label column of the same
    rows; the report travels with the rows into the outputs, ``selectit.json`` and the card."""
    from .validation import attach_validation, run_validation

    v = config.validate
    if v.label is None:
        raise ConfigError("A run's validate section needs label: <column> (e.g. validate: {label: kind, "
                          "positive: good}); validate preference pairs with `hf-selectit validate`.")
    if v.score_columns is None:
        v = replace(v, score_columns=[select_column_for(config)])
    if v.plot is None and config.publish is not None:
        # A published version shows its validation figure on the card; without a path of the
        # user's it is drawn in the work folder (removed with the checkpoints after the run).
        work_dir.mkdir(parents=True, exist_ok=True)
        v = replace(v, plot=str(work_dir / VALIDATION_PLOT_FILENAME))
    try:
        report = run_validation(scored, replace(v, score_first=False))
    except ConfigError as err:
        # The rows are scored and selected already; a label the rows cannot be checked against
        # (one class only, e.g. a --limit run) must not cost the run. Said once, in the summary.
        logger.warning("Validation skipped: %s", err)
        summary.validation = {"skipped": str(err)}
        return scored
    row = next(r for r in report.results if r["role"] == "score")
    summary.validation = {"headline": report.headline(), "metric": report.metric, "column": row["name"],
                          **{k: row[k] for k in ("value", "ci_low", "ci_high", "n")},
                          "baselines": {r["name"]: r["value"] for r in report.results if r["role"] == "baseline"}}
    return attach_validation(scored, report)


def publish_subset(subset: Any, publish: PublishConfig, *, scored: Any = None, source: Optional[str] = None,
                   card_data: Optional[Mapping] = None, run_config: Optional[str] = None) -> str:
    """Publish with :func:`hf_selectit.publishing.publish` from a :class:`PublishConfig`;
    ``run_config`` (an `hf-selectit run`'s YAML) is uploaded as `selectit_run.yaml`. Returns
    where it went, as one line."""
    from .publishing import publish as _publish

    data = dict(card_data or {})
    data.update({k: v for k, v in (("license", publish.license), ("pretty_name", publish.pretty_name))
                 if v and k not in data})
    result = _publish(subset, publish.repo_id, version=publish.version, scored=scored, private=publish.private,
                      source=publish.source if source is None else source, branch=publish.branch,
                      overwrite=publish.overwrite, card_data=data or None, run_config=run_config)
    found = (getattr(result, attr, None) for attr in ("url", "path", "local_dir", "repo_id"))
    return str(next((value for value in found if value), publish.repo_id))
