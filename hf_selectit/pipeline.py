"""score -> fuse -> select -> validate -> publish from one configuration (the engine behind the CLI).

Scoring is checkpointed (a killed run restarts where it stopped) and runs on ``run.engine``:
``local`` (this machine: one process or ``num_proc`` workers, :mod:`hf_selectit.runner`) or
``ray`` (a Ray cluster's actors, :mod:`hf_selectit.ray_runner`). Heavy imports (datasets, the
scorer, torch, ray) happen inside functions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from .config import (  # noqa: F401  (RunOptions, FusionConfig, PipelineConfig: importable from here too)
    DEFAULT_PREFIX,
    FUSED_COLUMN,
    FusionConfig,
    IOConfig,
    PipelineConfig,
    PublishConfig,
    RayConfig,
    RunOptions,
    ScorerConfig,
    SelectConfig,
)
from .errors import ConfigError, OutputWriteError
from .methods import make_scorer  # noqa: F401  (importable from here too)
from .options import load_run_config
from .progress import ProgressCallback, ProgressEvent
from .runner import ScoreStats, default_work_dir

# The former name of the run-config loader.
load_pipeline_config = load_run_config

__all__ = ["ProgressEvent", "ScoreStats", "default_work_dir"]  # re-exported: the runner's

logger = logging.getLogger(__name__)



# ------------------------------------------------------------------------ summaries


@dataclass
class RunSummary:
    """The end-of-run numbers the CLI prints (and writes with ``--summary-json``)."""

    rows: int = 0
    models: list = field(default_factory=list)
    kept: Optional[int] = None
    select_column: Optional[str] = None
    # Rows an IFD cut-off (IFD > 1, or >= 1) dropped before the ratio was taken; 0 without one.
    rows_cut: int = 0
    output: Optional[str] = None
    subset_output: Optional[str] = None
    published: Optional[str] = None
    seconds: float = 0.0
    processes: int = 1
    # The validate step's figure for the selection column (headline, value, interval, n).
    validation: Optional[dict] = None

    @property
    def row_scores(self) -> int:
        """rows x models: what the scoring passes covered together."""
        return self.rows * len(self.models)

    @property
    def rows_scored(self) -> int:
        """Row scores computed by this run (rows x models, less those from checkpoints)."""
        return sum(m.rows_scored for m in self.models)

    @property
    def rows_resumed(self) -> int:
        return sum(m.rows_resumed for m in self.models)

    @property
    def truncated(self) -> int:
        return sum(m.truncated for m in self.models)

    @property
    def errors(self) -> int:
        return sum(m.errors for m in self.models)

    @property
    def scoring_seconds(self) -> float:
        return sum(m.seconds for m in self.models)

    @property
    def rows_per_second(self) -> Optional[float]:
        if not self.rows_scored or not self.scoring_seconds:
            return None
        return self.rows_scored / self.scoring_seconds

    def to_dict(self) -> dict:
        out = asdict(self)
        for name in ("row_scores", "rows_scored", "rows_resumed", "truncated", "errors",
                     "scoring_seconds", "rows_per_second"):
            out[name] = getattr(self, name)
        return out


# -------------------------------------------------------------------------- scoring


def score_dataset(
    ds: Any,
    scorer_config: Any,
    *,
    run: Optional[RunOptions] = None,
    ray: Optional[RayConfig] = None,
    work_dir: Union[str, os.PathLike, None] = None,
    model_index: int = 0,
    n_models: int = 1,
    on_progress: Optional[ProgressCallback] = None,
) -> tuple[Any, ScoreStats]:
    """Add one scorer's columns to ``ds``, checkpointed, on ``run.engine``: this machine
    (:mod:`hf_selectit.runner`) or a Ray cluster (:mod:`hf_selectit.ray_runner`).

    Args:
        ds: the input dataset (not modified).
        scorer_config: the scorer's config (``ScorerConfig`` or another method's), or a scorer.
        run: engine, batch size, workers, shard size, ``keep_checkpoints``.
        ray: the cluster and its workers (``run.engine == "ray"``).
        work_dir: where the checkpoints go (default: :func:`default_work_dir` of no output). It
            is locked for the call; after success the checkpoints are removed unless
            ``run.keep_checkpoints``.
        model_index, n_models: position of this model in a multi-model run (for progress).
        on_progress: receives :class:`ProgressEvent` s (per micro-batch and per shard).

    Returns:
        ``(scored, stats)``: ``ds`` with the scorer's columns appended, same rows in the same
        order, its provenance attached (``hf_selectit.provenance``), and the pass's numbers.

    Raises:
        ConfigError: an empty dataset, or output columns that already exist in ``ds``.
        OutputLockedError: another live run holds ``work_dir``.

    Example:
        >>> scored, stats = score_dataset(ds, ScorerConfig(model="HuggingFaceTB/SmolLM2-135M-Instruct"))
    """
    from .runner import output_lock, remove_checkpoints

    run = run or RunOptions()
    root = Path(work_dir) if work_dir is not None else default_work_dir(None)
    with contextlib.ExitStack() as stack:
        if work_dir is not None:
            # An output's own work directory: one writer. (The shared user cache is not locked:
            # its folders are named after the rows and the config.)
            stack.enter_context(output_lock(root))
        scored, stats = _score_one(ds, make_scorer(scorer_config), run=run, ray=ray, work_dir=root,
                                   model_index=model_index, n_models=n_models, on_progress=on_progress)
        if not run.keep_checkpoints:
            remove_checkpoints(stats.work_dir)
    return scored, stats


def _score_one(ds: Any, scorer: Any, *, run: RunOptions, ray: Optional[RayConfig], work_dir: Path,
               model_index: int, n_models: int, on_progress: Optional[ProgressCallback]) -> tuple[Any, ScoreStats]:
    import datasets

    from .provenance import attach_scorer_info

    kwargs = dict(work_dir=work_dir, shard_rows=run.shard_rows, batch_size=run.batch_size,
                  on_progress=on_progress, model_index=model_index, n_models=n_models)
    if run.engine == "ray":
        from .ray_runner import score_blocks

        scores, stats, info = score_blocks(ds, scorer, ray=ray or RayConfig(), **kwargs)
    else:
        from .models import check_processes
        from .runner import score_shards

        # A device_map model spans the machine's devices: one process, before any work.
        check_processes(getattr(scorer, "config", None), run.num_proc)
        scores, stats, info = score_shards(ds, scorer, num_proc=run.num_proc, **kwargs)
    scored = datasets.concatenate_datasets([ds, scores], axis=1)
    return attach_scorer_info(scored, info), stats


# ---------------------------------------------------------------------------- run


def select_column_for(config: PipelineConfig) -> str:
    """The score column selection ranks by: ``select.column`` when set, else the fused column
    with several SelectIT models, else the first model's score (its column schema's)."""
    select = config.select or SelectConfig()
    if select.column is not None:
        return select.column
    if len(_selectit_models(config)) > 1:
        return config.fusion.output
    from .methods.columns import for_config

    return for_config(config.models[0]).score


def _selectit_models(config: PipelineConfig) -> list:
    """Indices of the SelectIT models of a run (the ones model-level fusion combines)."""
    return [i for i, m in enumerate(config.models) if isinstance(m, ScorerConfig)]


def fuse(ds: Any, config: PipelineConfig) -> Any:
    """Model-level fusion of the models' sentence scores (several models only)."""
    from .select import fuse_models

    # Model-level SelectIT fuses the SelectIT models' sentence scores; other methods' columns
    # stay as they are (select on any of them with select.column).
    from .methods.columns import for_config

    chosen = _selectit_models(config)
    columns = [for_config(config.models[i]).score for i in chosen]
    params = [config.model_params[i] for i in chosen] if config.model_params else []
    kwargs: dict = {}
    if config.fusion.weights is not None:
        kwargs["weights"] = config.fusion.weights
    elif config.fusion.params is not None:
        kwargs["params"] = list(config.fusion.params)
    elif params and all(p is not None for p in params):
        kwargs["params"] = params
    return fuse_models(ds, columns=columns, output=config.fusion.output, **kwargs)


def run_pipeline(config: PipelineConfig, *, on_progress: Optional[ProgressCallback] = None,
                 dataset: Any = None) -> tuple[RunSummary, Any, Any]:
    """Score with every model, fuse, select, write and publish, as ``config`` says.

    Args:
        config: from :func:`load_pipeline_config` (or built directly).
        on_progress: called after each shard of each model.
        dataset: use these rows instead of loading ``config.io.input``.

    Returns:
        ``(summary, scored, subset)``; ``subset`` is None when ``config.select`` is None.

    Raises:
        ConfigError, SchemaError, ModelLoadError, PublishError: from the steps.

    Example:
        >>> summary, scored, subset = run_pipeline(load_run_config("hf_selectit/configs/demo.yaml"))
    """
    from .io import check_output_path, load_input

    t0 = time.perf_counter()
    io = config.io
    # Paths that cannot be written are refused now, not after hours of scoring.
    if io.output:
        check_output_path(io.output, output_format=output_format(config))
    if config.run.subset_output:
        check_output_path(config.run.subset_output, option="subset_output")
    ds = dataset
    if ds is None:
        ds = load_input(io.input, split=io.split, config_name=io.config_name,
                        revision=io.revision, limit=io.limit)
    elif io.limit is not None and io.limit < len(ds):
        ds = ds.select(range(io.limit))
    from .models import check_processes
    from .runner import output_lock, remove_checkpoints

    if config.run.engine == "local":
        for scorer_config in config.models:
            # Before any model is scored: a device_map model later in the list must not fail
            # after hours of work on the first ones.
            check_processes(scorer_config, config.run.num_proc)
    summary = RunSummary(rows=len(ds))
    work_dir = pipeline_work_dir(config)
    # One writer per output: the lock (keyed on the output, so another --work-dir does not get
    # past it) is held until the outputs are written.
    with output_lock(lock_dir(config), what=_target_name(config)):
        scored = ds
        for i, scorer_config in enumerate(config.models):
            scored_i, stats = _score_one(ds, make_scorer(scorer_config), run=config.run, ray=config.ray,
                                         work_dir=work_dir, model_index=i, n_models=len(config.models),
                                         on_progress=on_progress)
            summary.models.append(stats)
            scored = scored_i if i == 0 else _add_columns(scored, scored_i, stats.column_prefix)
        summary.processes = max(m.processes for m in summary.models)
        try:
            scored, subset = _finish(config, summary, scored)
        except OutputWriteError as exc:
            raise OutputWriteError(f"{exc} The scores are kept in {work_dir}: run the same command "
                                   "again once the cause is fixed, and it resumes from them.") from exc
        if not config.run.keep_checkpoints:
            remove_checkpoints(work_dir)
    summary.seconds = time.perf_counter() - t0
    if config.run.summary_json:
        from .atomic import write_text
        from .redaction import redact_mapping

        write_text(config.run.summary_json, json.dumps(redact_mapping(summary.to_dict()), indent=2, default=str))
    return summary, scored, subset


def pipeline_work_dir(config: PipelineConfig) -> Path:
    """The work directory (checkpoints and lock) of a run: ``run.work_dir`` if set, else beside
    the output, else beside a local publish folder, else the user cache (see
    :func:`hf_selectit.runner.default_work_dir`)."""
    if config.run.work_dir:
        return Path(config.run.work_dir)
    return default_work_dir(_target_name(config))


def lock_dir(config: PipelineConfig) -> Path:
    """Where a run's lock file goes: the output's own work directory (whatever ``run.work_dir``
    says, so two runs on one output always meet there), else the run's work directory."""
    target = _target_name(config)
    return default_work_dir(target) if target else pipeline_work_dir(config)


def output_format(config: PipelineConfig) -> str:
    """The run's output format: ``io.output_format``, except that a folder output of a Ray run is
    parquet (+ selectit.json), which load_dataset, ray.data.read_parquet and every engine read."""
    from .io import resolve_output_format

    fmt = config.io.output_format
    if fmt == "auto" and config.run.engine == "ray" and resolve_output_format(config.io.output) == "disk":
        return "parquet"
    return fmt


def _target_name(config: PipelineConfig) -> Optional[str]:
    if config.io.output:
        return config.io.output
    if config.publish is not None and config.publish.repo_id:
        from .publishing import is_local_target

        if is_local_target(config.publish.repo_id):
            return config.publish.repo_id
    return None


def _finish(config: PipelineConfig, summary: RunSummary, scored: Any) -> tuple[Any, Any]:
    """Fuse, write, select and publish (main process); returns ``(scored, subset)``."""
    from .io import save_output

    io = config.io
    if len(_selectit_models(config)) > 1:
        scored = fuse(scored, config)
    if getattr(config, "validate", None) is not None:
        scored = _validate(config, summary, scored)
    if io.output:
        save_output(scored, io.output, output_format=output_format(config))
        summary.output = io.output

    subset = None
    if config.select is not None:
        from .select import select_top

        column = select_column_for(config)
        subset = select_top(scored, column=column, **config.select.rule())
        summary.kept = len(subset)
        summary.select_column = column
        summary.rows_cut = int(subset.selection.rule.get("rows_cut") or 0)
        if config.run.subset_output:
            save_output(subset, config.run.subset_output)
            summary.subset_output = config.run.subset_output
    if config.publish is not None:
        if subset is None:
            raise ConfigError("publish needs a selected subset: add a `select` section.")
        summary.published = publish_subset(subset, config.publish, scored=scored,
                                           source=config.publish.source or _hub_source(io),
                                           card_data=config.card_data, run_config=config.config_file)
    return scored, subset


def _validate(config: PipelineConfig, summary: RunSummary, scored: Any) -> Any:
    """The run's ``validate:`` step: check the selection column against a label column of the same
    rows; the report travels with the rows into the outputs, ``selectit.json`` and the card."""
    from dataclasses import replace

    from .validation import attach_validation, run_validation
    from .validation_plot import VALIDATION_PLOT_FILENAME

    v = config.validate
    if v.label is None:
        raise ConfigError("A run's validate section needs label: <column> (e.g. validate: {label: kind, "
                          "positive: good}); validate preference pairs with `hf-selectit validate`.")
    if v.score_columns is None:
        v = replace(v, score_columns=[select_column_for(config)])
    if v.plot is None and config.publish is not None:
        # A published version shows its validation figure on the card; without a path of the
        # user's it is drawn in the work folder (removed with the checkpoints after the run).
        work_dir = pipeline_work_dir(config)
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


def _add_columns(scored: Any, scored_i: Any, column_prefix: str) -> Any:
    """Append model i's columns (and provenance) to the dataset already scored by earlier models."""
    import datasets

    from .provenance import attach_scorer_info, scorer_infos

    new = [c for c in scored_i.column_names if c.startswith(column_prefix)
           and c not in scored.column_names]
    merged = datasets.concatenate_datasets([scored, scored_i.select_columns(new)], axis=1)
    for info in scorer_infos(scored).values():
        merged = attach_scorer_info(merged, info)
    for info in scorer_infos(scored_i).values():
        merged = attach_scorer_info(merged, info)
    return merged


def _hub_source(io: IOConfig) -> Optional[str]:
    # The card names the source dataset (and its licence is read from the source's card).
    from .io import is_local_path

    if io.input and not is_local_path(io.input):
        return f"{io.input}@{io.revision}" if io.revision else io.input
    return None


def publish_subset(subset: Any, publish: PublishConfig, *, scored: Any = None,
                   source: Optional[str] = None, card_data: Optional[Mapping] = None,
                   run_config: Optional[str] = None) -> str:
    """Publish with :func:`hf_selectit.publishing.publish` from a :class:`PublishConfig`.

    `run_config` is the YAML file of an `hf-selectit run`: uploaded as `selectit_run.yaml`.

    Returns:
        A one-line description of where it went (the publisher's result, as text).
    """
    from .publishing import publish as _publish

    if source is None:
        source = publish.source
    data = dict(card_data or {})
    if publish.license:
        data.setdefault("license", publish.license)
    if publish.pretty_name:
        data.setdefault("pretty_name", publish.pretty_name)
    result = _publish(subset, publish.repo_id, version=publish.version, scored=scored, source=source,
                      private=publish.private, branch=publish.branch, overwrite=publish.overwrite,
                      card_data=data or None, run_config=run_config)
    return describe_publish_result(result, publish.repo_id)


def describe_publish_result(result: Any, repo_id: str) -> str:
    for attr in ("url", "path", "local_dir", "repo_id"):
        value = getattr(result, attr, None)
        if value:
            return str(value)
    return str(repo_id)
