"""Scoring beyond one machine: every scorer as a Ray Data ``map_batches`` actor.

``ds.map(scorer, batched=True)`` becomes ``ray_ds.map_batches(ScorerActor, num_gpus=g,
compute=ActorPoolStrategy(size=n))``: ``n`` long-lived actors (one per GPU, or per CPU slot), each
rebuilding the scorer from its config and loading the model once. Any method and any backend a
scorer config names work unchanged: the actor only calls the scorer. ``ray`` (the optional extra
``hf-selectit[ray]``) is imported inside functions.

- **Order and exactly once.** The rows go out with their input row index; this process (the
  driver) receives the scored blocks in whatever order they finish, keeps each row once, and
  puts them back in input order (:class:`hf_selectit.runner.Checkpoints`), checking that every
  input row came back exactly once.
- **A worker dies.** Ray Data restarts the actor and runs its unfinished block again (its actor
  pools default to ``max_restarts=-1`` and ``max_task_retries=-1``); the cost is that block and
  one model load. An exception raised by the scorer is not retried: it fails the run.
- **The driver dies.** Each block is saved by the driver as soon as it arrives, as a completion
  file on the output's work directory (the same checkpoints as the local engine); a restart
  sends only the rows no file holds. Only the driver writes, so no filesystem needs to be shared
  between the nodes. (Ray Data's own checkpointing, beta in 2.60, would need storage every node
  can write and works per write sink; see docs/scaling.md.)
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Optional, Union

from . import provenance
from .config import RayConfig
from .errors import ConfigError
from .progress import ProgressCallback
from .runner import ROW_INDEX, Checkpoints, ScoreStats, score_with

logger = logging.getLogger(__name__)

#: The column through which an actor hands the scorer's provenance to the driver (first row of
#: each block only).
INFO_COLUMN = "__selectit_info"
INSTALL_LINE = 'pip install "hf-selectit[ray]"'


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or a ConfigError with the install line.

    Raises:
        ConfigError: ``ray[data]`` is not installed.
    """
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"engine='ray' needs Ray Data, which is not installed here ({exc}). "
                          f"Install it with: {INSTALL_LINE}") from exc
    return ray


def connect(config: RayConfig) -> Any:
    """Join the cluster of ``config.address`` (or ``RAY_ADDRESS``), or start a local one on this
    machine; nothing when this process is connected already. Returns the ``ray`` module.

    Ray's own output stays out of our progress bar: no Ray Data bars; Ray's log lines from
    WARNING up (ERROR for a local cluster started here), all of them when hf-selectit's logger is
    at DEBUG (``-vv``). The actors' warnings still reach this terminal; a failed task is raised."""
    ray = import_ray()
    debug = logger.isEnabledFor(logging.DEBUG)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours counts rows; Ray's would draw over it
    context.print_on_execution_start = debug
    # Ray Data warns that its bars are off, on its module's logger: no setting turns that off.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    if not debug:
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # execution plans, log folders
    if ray.is_initialized():
        return ray
    kwargs: dict = {"logging_level": logging.INFO if debug else logging.WARNING}
    if config.address:
        kwargs["address"] = config.address
    elif not os.environ.get("RAY_ADDRESS"):
        # A local cluster for this run only; ERROR hides its start-up notice that token auth is on.
        kwargs.update(include_dashboard=False, logging_level=logging.INFO if debug else logging.ERROR)
        if config.object_store_memory:
            kwargs["object_store_memory"] = config.object_store_memory
    logger.info("Connecting to Ray (%s)", config.address or os.environ.get("RAY_ADDRESS") or "a local cluster")
    ray.init(**kwargs)
    return ray


class ScorerActor:
    """One Ray Data actor: the scorer rebuilt from its config, its model loaded once, here.

    Args:
        scorer_class: the scorer's class (any class with ``from_config``).
        config: the scorer's config dataclass (a few hundred bytes; never weights).
    """

    def __init__(self, scorer_class: type, config: Any) -> None:
        from .progress import quiet_third_party_bars

        self.scorer = scorer_class.from_config(config)
        # info() loads the model (in the actor's __init__, once) and says what was loaded; the
        # loading bars would reach the driver's terminal through Ray's log forwarding.
        with quiet_third_party_bars():
            self.info = json.dumps(self.scorer.info(), sort_keys=True, default=str)

    def __call__(self, batch: Any) -> Any:
        """Score one ``pyarrow.Table`` batch; returns the scorer's columns, the row index and
        the provenance (first row only)."""
        import datasets
        import pyarrow as pa

        rows = batch.column(ROW_INDEX)
        out = self.scorer(batch.drop_columns([ROW_INDEX]).to_pydict())
        # The same type inference as Dataset.map, so both engines give the same features.
        table = datasets.Dataset.from_dict(out).data.table
        info = pa.array([self.info] + [None] * (len(rows) - 1), pa.string())
        return table.append_column(ROW_INDEX, rows).append_column(INFO_COLUMN, info)


def _workers(ray: Any, config: RayConfig, blocks: int) -> tuple[int, float]:
    """(actors, GPUs per actor): as configured, else one per GPU of the cluster, else one per
    CPU slot; never more actors than blocks."""
    resources = ray.cluster_resources()
    gpus = config.num_gpus if config.num_gpus is not None else (1.0 if resources.get("GPU", 0) >= 1 else 0.0)
    if config.num_workers:
        n = config.num_workers
    elif gpus:
        n = int(resources.get("GPU", 0) // gpus)
    else:
        n = int(resources.get("CPU", 1) // (config.num_cpus or 1))
    return max(1, min(n, blocks)), gpus


def score_blocks(ds: Any, scorer: Any, *, ray: RayConfig, work_dir: Union[str, os.PathLike],
                 shard_rows: int = 256, batch_size: int = 64, on_progress: Optional[ProgressCallback] = None,
                 model_index: int = 0, n_models: int = 1) -> tuple[Any, ScoreStats, dict]:
    """Score ``ds`` on a Ray cluster, checkpointed per block (the ``ray`` engine of the pipeline).

    Args and returns are those of :func:`hf_selectit.runner.score_shards`, with ``ray`` (the
    cluster and its actors) instead of ``num_proc``; ``shard_rows`` is the rows per Ray block
    (one actor task, one completion file). The caller holds the output's lock.

    Raises:
        ConfigError: ray is not installed, an empty input, clashing columns, a model in memory.
        ShardMergeError: the blocks do not add up to the input rows exactly.
    """
    import numpy as np
    import pyarrow as pa

    if not hasattr(type(scorer), "from_config") or not hasattr(scorer, "config"):
        raise ConfigError(f"{type(scorer).__name__} cannot run on Ray: an actor rebuilds the scorer with "
                          "type(scorer).from_config(scorer.config). Use one of the package's scorers.")
    preloaded = getattr(getattr(scorer, "engine", None), "preloaded", None)
    if preloaded is not None:
        from .models import preloaded_pickle_error

        raise preloaded_pickle_error(preloaded[0])
    ckpt = Checkpoints(ds, scorer, work_dir=work_dir, shard_rows=shard_rows, engine="ray", on_progress=on_progress,
                       model_index=model_index, n_models=n_models)

    def score_parts(chunks: list) -> Optional[dict]:
        rt = connect(ray)
        workers, gpus = _workers(rt, ray, len(chunks))
        ckpt.stats.processes = workers
        todo = np.concatenate(chunks)
        source = ds if len(todo) == len(ds) else ds.select(todo)
        table = source.with_format("arrow")[:].append_column(ROW_INDEX, pa.array(todo, pa.int64()))
        # One block per chunk: one actor task and one completion file each.
        blocks = [table.slice(i, shard_rows) for i in range(0, table.num_rows, shard_rows)]
        scored = rt.data.from_arrow(blocks).map_batches(
            ScorerActor, fn_constructor_kwargs={"scorer_class": type(scorer), "config": scorer.config},
            batch_size=batch_size, batch_format="pyarrow", **_actor_pool(rt, workers),
            num_gpus=gpus, num_cpus=ray.num_cpus)
        logger.info("Scoring %d rows in %d blocks on %d Ray actors (%g GPU each)", len(todo), len(blocks),
                    workers, gpus)
        info = None
        for i, batch in enumerate(scored.iter_batches(batch_size=None, batch_format="pyarrow")):
            text = next((v for v in batch.column(INFO_COLUMN).to_pylist() if v is not None), None)
            if info is None and text is not None:
                # Saved before the first part, so a run resumed in full never loads the model here.
                info = provenance.cached_info(lambda: json.loads(text), ckpt.root)
            n = ckpt.write(batch.column(ROW_INDEX).to_numpy(), batch.drop_columns([ROW_INDEX, INFO_COLUMN]))
            ckpt.emit("rows", n, shard=ckpt.stats.shards_resumed + i)
        return info

    return ckpt.run(score_parts)


def _actor_pool(rt: Any, workers: int) -> dict:
    """`map_batches`' fixed pool of `workers` actors, in the keyword this Ray does not warn about:
    `compute=ActorPoolStrategy(size=n)` from Ray 2.51 (which deprecated `concurrency`), and
    `concurrency=n` before it (where `compute` was the deprecated one; the floor is 2.40)."""
    from packaging.version import Version

    if Version(rt.__version__) >= Version("2.51"):
        return {"compute": rt.data.ActorPoolStrategy(size=workers)}
    return {"concurrency": workers}


def score_on_ray(data: Any, scorer: Any, *, address: Optional[str] = None, num_workers: Optional[int] = None,
                 num_gpus: Optional[float] = None, num_cpus: float = 1.0, batch_size: int = 64,
                 shard_rows: int = 256, work_dir: Union[str, os.PathLike, None] = None,
                 keep_checkpoints: bool = False, on_progress: Optional[ProgressCallback] = None) -> Any:
    """Add a scorer's columns to ``data`` on a Ray cluster: ``ds.map(scorer, batched=True)`` with
    one Ray Data actor per GPU (or CPU slot), each loading the model once.

    Every input row comes back once, in input order, with the same columns, statuses and
    provenance as ``ds.map(scorer)``. Blocks are checkpointed as they arrive, so calling it again
    after this process was killed scores only the rest.

    Args:
        data: a ``datasets.Dataset``, or anything :func:`hf_selectit.io.load_input` reads.
        scorer: a scorer (``SelectITScorer(...)``, ``IFDScorer(...)``, ..., or a config's
            ``make_scorer``); it goes to the actors as its config, never as weights.
        address: the cluster ('auto', 'HOST:6379', 'ray://HOST:10001'); None: ``RAY_ADDRESS``,
            else a local cluster on this machine.
        num_workers: actors (None: one per GPU, or per CPU slot without GPUs).
        num_gpus: GPUs per actor (None: 1 when the cluster has GPUs, else 0).
        num_cpus: CPUs per actor.
        batch_size: rows per scorer call.
        shard_rows: rows per Ray block (one task, one completion file).
        work_dir: where the completion files go (locked for the call). None: the user cache.
        keep_checkpoints: keep them after success (default: removed).
        on_progress: receives :class:`~hf_selectit.progress.ProgressEvent` s, one per block.

    Returns:
        ``data`` with the scorer's columns appended and its provenance attached.

    Raises:
        ConfigError: ray is not installed (the message gives ``pip install "hf-selectit[ray]"``),
            an empty input, columns that already exist, a scorer holding a model in memory.
        OutputLockedError: another live run holds ``work_dir``.
        ShardMergeError: the rows did not all come back exactly once.

    Example:
        >>> scored = score_on_ray(ds, SelectITScorer("Qwen/Qwen2.5-7B"), address="auto", num_gpus=1)
    """
    import datasets

    if not isinstance(data, datasets.Dataset):
        from .io import load_input

        data = load_input(data)
    config = RayConfig(address=address, num_workers=num_workers, num_gpus=num_gpus, num_cpus=num_cpus)
    return score_with(data, scorer, score_blocks, ray=config, work_dir=work_dir, keep_checkpoints=keep_checkpoints,
                      shard_rows=shard_rows, batch_size=batch_size, on_progress=on_progress)[0]
