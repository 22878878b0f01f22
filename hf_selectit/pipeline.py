"""score -> fuse -> select -> publish from one configuration (the engine behind the CLI).

Scoring runs in contiguous shards of rows. Each finished shard's new columns are written with
`save_to_disk` under a work directory named after a fingerprint of the input rows and the scorer
config (first under a temporary name, then renamed, so a half-written shard never looks
finished). A run that is killed and started again with the same configuration loads the finished
shards and scores only the rest: `Dataset.map`'s own cache cannot do that, because a killed map
leaves no cache file behind.

Layout: `<work_dir>/<fingerprint>/shard-00003/` (one per shard), `scorer_info.json`,
`config.json`.

Heavy imports (datasets, the scorer, torch) happen inside functions.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import shutil
import time
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

from ._version import __version__
from .config import (  # noqa: F401  (RunOptions, FusionConfig, PipelineConfig: importable from here too)
    DEFAULT_PREFIX,
    FUSED_COLUMN,
    FusionConfig,
    IOConfig,
    PipelineConfig,
    PublishConfig,
    RunOptions,
    ScorerConfig,
    SelectConfig,
)
from .errors import ConfigError
from .options import load_run_config

# The former name of the run-config loader.
load_pipeline_config = load_run_config

logger = logging.getLogger(__name__)



# ------------------------------------------------------------------------ summaries


@dataclass
class ScoreStats:
    """What one model's scoring pass did."""

    column_prefix: str
    model: Optional[str]
    rows: int = 0
    rows_scored: int = 0
    rows_resumed: int = 0
    shards: int = 0
    shards_scored: int = 0
    shards_resumed: int = 0
    ok: int = 0
    truncated: int = 0
    errors: int = 0
    seconds: float = 0.0
    work_dir: Optional[str] = None


@dataclass
class RunSummary:
    """The end-of-run numbers the CLI prints (and writes with ``--summary-json``)."""

    rows: int = 0
    models: list = field(default_factory=list)
    kept: Optional[int] = None
    select_column: Optional[str] = None
    output: Optional[str] = None
    subset_output: Optional[str] = None
    published: Optional[str] = None
    seconds: float = 0.0

    @property
    def rows_scored(self) -> int:
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
        for name in ("rows_scored", "rows_resumed", "truncated", "errors", "scoring_seconds",
                     "rows_per_second"):
            out[name] = getattr(self, name)
        return out


@dataclass
class ProgressEvent:
    """Sent to ``on_progress`` after each shard (scored or loaded from a checkpoint)."""

    model_index: int
    n_models: int
    shard: int
    n_shards: int
    rows: int
    resumed: bool
    total_rows: int = 0
    done: bool = True  # False: sent just before a shard starts scoring (rows == 0)


ProgressCallback = Callable[[ProgressEvent], None]


# -------------------------------------------------------------------------- scoring


def input_fingerprint(ds: Any) -> str:
    """A stable fingerprint of the rows of ``ds``.

    Datasets backed by cache files (anything from ``load_dataset``/``load_from_disk``) have a
    deterministic ``_fingerprint``; in-memory ones get a random one, so their table is hashed.
    """
    if ds.cache_files:
        return ds._fingerprint
    import pyarrow as pa

    digest = hashlib.sha256()
    table = ds.data.table
    if ds._indices is not None:
        table = ds.with_format(None).flatten_indices().data.table
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()[:32]


def scoring_fingerprint(ds: Any, scorer: Any, *, shard_rows: int) -> str:
    """Name of the work directory of one (input rows, scorer, sharding) combination.

    The scorer enters through `datasets`' own hash of it, which covers everything that changes
    scores (model, revision, prompts, alpha, ..., and the files of a local model folder) and
    leaves out what does not (device, token budget), so a restart on another device resumes.
    """
    from datasets.fingerprint import Hasher

    payload = {
        "input": input_fingerprint(ds),
        "rows": len(ds),
        "scorer": Hasher.hash(scorer),
        "shard_rows": shard_rows,
        "version": __version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def default_work_dir(output: Optional[str]) -> Path:
    """`<output folder>/.selectit-work`, or hf-selectit's cache dir (`$HF_SELECTIT_CACHE` or the
    user cache dir) + `/work` when there is no output."""
    if output:
        out = Path(output)
        base = out.parent if out.suffix.lower() in (".parquet", ".jsonl") else out
        return base / ".selectit-work"
    from .models import cache_dir

    return cache_dir() / "work"


def score_dataset(
    ds: Any,
    scorer_config: ScorerConfig,
    *,
    run: Optional[RunOptions] = None,
    work_dir: Union[str, os.PathLike, None] = None,
    model_index: int = 0,
    n_models: int = 1,
    on_progress: Optional[ProgressCallback] = None,
) -> tuple[Any, ScoreStats]:
    """Add one scorer's columns to ``ds`` in checkpointed shards.

    Args:
        ds: the input dataset (not modified).
        scorer_config: the scorer to run.
        run: batch size, workers, shard size.
        work_dir: root of the shard checkpoints (default: :func:`default_work_dir` of no output).
        model_index, n_models: position of this model in a multi-model run (for progress).
        on_progress: called after each shard with a :class:`ProgressEvent`.

    Returns:
        ``(scored, stats)``: ``ds`` with the scorer's columns appended, same rows in the same
        order, its provenance attached (``hf_selectit.metadata``), and the pass's numbers.

    Raises:
        ConfigError: an empty dataset, or output columns that already exist in ``ds``.

    Example:
        >>> scored, stats = score_dataset(ds, ScorerConfig(model="HuggingFaceTB/SmolLM2-135M-Instruct"))
    """
    import datasets

    from .config import method_of
    from .metadata import attach_scorer_info
    from .methods import scorer_class

    run = run or RunOptions()
    n = len(ds)
    if n == 0:
        raise ConfigError("The input has 0 rows: nothing to score.")
    # The config's class names its method (config.METHOD_CONFIGS); its scorer class builds it.
    scorer = scorer_class(method_of(scorer_config)).from_config(scorer_config)
    clash = sorted(set(scorer.output_columns) & set(ds.column_names))
    if clash:
        raise ConfigError(
            f"The input already has the columns {clash}. Pass another column_prefix "
            f"(now {scorer_config.column_prefix!r}) or drop them first."
        )
    root = Path(work_dir or default_work_dir(None)) / scoring_fingerprint(
        ds, scorer, shard_rows=run.shard_rows)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob("shard-*.tmp-*"):
        # Left by a killed run: the rename never happened, so the shard is not finished.
        shutil.rmtree(stale, ignore_errors=True)
    (root / "config.json").write_text(json.dumps(
        {"scorer": asdict(scorer_config), "rows": n, "shard_rows": run.shard_rows,
         "version": __version__}, indent=2, default=str))

    stats = ScoreStats(column_prefix=scorer_config.column_prefix, model=scorer_config.model,
                       rows=n, work_dir=str(root))
    starts = list(range(0, n, run.shard_rows))
    stats.shards = len(starts)
    parts = []
    for i, start in enumerate(starts):
        end = min(start + run.shard_rows, n)
        final = root / f"shard-{i:05d}"
        resumed = final.is_dir()
        if resumed:
            part = datasets.load_from_disk(str(final))
            if len(part) != end - start:
                raise ConfigError(
                    f"Checkpoint {final} has {len(part)} rows, expected {end - start}. "
                    f"Delete {root} to score this input again."
                )
            stats.shards_resumed += 1
            stats.rows_resumed += len(part)
        else:
            if on_progress is not None:
                on_progress(ProgressEvent(model_index, n_models, i, len(starts), 0, False, n, done=False))
            t0 = time.perf_counter()
            part = ds.select(range(start, end)).map(
                scorer, batched=True, batch_size=run.batch_size, with_rank=True,
                num_proc=run.num_proc if (run.num_proc or 1) > 1 else None,
                remove_columns=ds.column_names,
                desc=f"{scorer_config.column_prefix} shard {i + 1}/{len(starts)}",
            )
            tmp = root / f"shard-{i:05d}.tmp-{os.getpid()}"
            part.save_to_disk(str(tmp))
            os.replace(tmp, final)
            part = datasets.load_from_disk(str(final))
            stats.seconds += time.perf_counter() - t0
            stats.shards_scored += 1
            stats.rows_scored += len(part)
        if on_progress is not None:
            on_progress(ProgressEvent(model_index, n_models, i, len(starts), len(part), resumed, n))
        parts.append(part)

    scores = datasets.concatenate_datasets(parts)
    _count_status(scores, scorer_config.column_prefix + "status", stats)
    scored = datasets.concatenate_datasets([ds, scores], axis=1)
    scored = attach_scorer_info(scored, _scorer_info(scorer, root))
    return scored, stats


def _scorer_info(scorer: Any, root: Path) -> dict:
    # The info needs the loaded model; keep it beside the shards so a fully resumed run does not
    # load the model only to describe it.
    path = root / "scorer_info.json"
    if path.is_file():
        return json.loads(path.read_text())
    info = scorer.info()
    path.write_text(json.dumps(info, indent=2, sort_keys=True, default=str))
    return json.loads(path.read_text())


def _count_status(scores: Any, column: str, stats: ScoreStats) -> None:
    if column not in scores.column_names:
        return
    for status in scores[column]:
        if status == "ok":
            stats.ok += 1
        elif status == "truncated":
            stats.truncated += 1
        else:
            stats.errors += 1
    if stats.errors:
        logger.warning("%d of %d rows could not be scored (see the %s column).",
                       stats.errors, stats.rows, column)


# ---------------------------------------------------------------------------- run


def select_column_for(config: PipelineConfig) -> str:
    """The score column selection ranks by: the fused column with several models, else the
    one model's sentence score (unless ``select.column`` was set to something else)."""
    select = config.select or SelectConfig()
    default = SelectConfig().column
    if select.column != default:
        return select.column
    if len(config.models) > 1:
        return config.fusion.output
    return config.models[0].column_prefix + "sentence_score"


def fuse(ds: Any, config: PipelineConfig) -> Any:
    """Model-level fusion of the models' sentence scores (several models only)."""
    from .select import fuse_models

    columns = [m.column_prefix + "sentence_score" for m in config.models]
    kwargs: dict = {}
    if config.fusion.weights is not None:
        kwargs["weights"] = config.fusion.weights
    elif config.fusion.params is not None:
        kwargs["params"] = list(config.fusion.params)
    elif config.model_params and all(p is not None for p in config.model_params):
        kwargs["params"] = list(config.model_params)
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
    from .io import load_input, save_output

    t0 = time.perf_counter()
    io = config.io
    ds = dataset
    if ds is None:
        ds = load_input(io.input, split=io.split, config_name=io.config_name,
                        revision=io.revision, limit=io.limit)
    elif io.limit is not None and io.limit < len(ds):
        ds = ds.select(range(io.limit))
    summary = RunSummary(rows=len(ds))
    work_dir = Path(config.run.work_dir) if config.run.work_dir else default_work_dir(io.output)

    scored = ds
    for i, scorer_config in enumerate(config.models):
        scored_i, stats = score_dataset(ds, scorer_config, run=config.run, work_dir=work_dir,
                                        model_index=i, n_models=len(config.models),
                                        on_progress=on_progress)
        summary.models.append(stats)
        scored = scored_i if i == 0 else _add_columns(scored, scored_i, scorer_config)
    if len(config.models) > 1:
        scored = fuse(scored, config)
    if io.output:
        save_output(scored, io.output, output_format=io.output_format)
        summary.output = io.output

    subset = None
    if config.select is not None:
        from .select import select_top

        column = select_column_for(config)
        subset = select_top(scored, column=column, **config.select.rule())
        summary.kept = len(subset)
        summary.select_column = column
        if config.run.subset_output:
            save_output(subset, config.run.subset_output)
            summary.subset_output = config.run.subset_output
    if config.publish is not None:
        if subset is None:
            raise ConfigError("publish needs a selected subset: add a `select` section.")
        summary.published = publish_subset(subset, config.publish, scored=scored,
                                           source=config.publish.source or _hub_source(io),
                                           card_data=config.card_data)
    summary.seconds = time.perf_counter() - t0
    if config.run.summary_json:
        Path(config.run.summary_json).write_text(json.dumps(summary.to_dict(), indent=2, default=str))
    return summary, scored, subset


def _add_columns(scored: Any, scored_i: Any, scorer_config: ScorerConfig) -> Any:
    """Append model i's columns (and provenance) to the dataset already scored by earlier models."""
    import datasets

    from .metadata import attach_scorer_info, scorer_infos

    new = [c for c in scored_i.column_names if c.startswith(scorer_config.column_prefix)
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
                   source: Optional[str] = None, card_data: Optional[Mapping] = None) -> str:
    """Publish with :func:`hf_selectit.publish.publish` from a :class:`PublishConfig`.

    Returns:
        A one-line description of where it went (the publisher's result, as text).
    """
    from .publish import publish as _publish

    data = dict(card_data or {})
    if publish.license:
        data.setdefault("license", publish.license)
    if publish.pretty_name:
        data.setdefault("pretty_name", publish.pretty_name)
    if source is None:
        source = publish.source
    result = _publish(subset, publish.repo_id, version=publish.version, scored=scored, source=source,
                      private=publish.private, branch=publish.branch, overwrite=publish.overwrite,
                      card_data=data or None)
    return describe_publish_result(result, publish.repo_id)


def describe_publish_result(result: Any, repo_id: str) -> str:
    for attr in ("url", "path", "local_dir", "repo_id"):
        value = getattr(result, attr, None)
        if value:
            return str(value)
    return str(repo_id)
