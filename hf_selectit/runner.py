"""Checkpointed scoring on one machine, and the checkpoints that every engine shares
(docs/scaling.md, "Checkpoints and resume"): parts of ``shard_rows`` rows, scored by
``Dataset.map`` here or by Ray actors (:mod:`hf_selectit.ray_runner`), each written by this
process alone as a parquet *completion file* in ``<work_dir>/<prefix><fingerprint>/``, beside
``scorer_info.json``; ``<work_dir>/LOCK`` names the run holding it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import progress, provenance
from ._version import __version__
from .atomic import describe_os_error, pid_alive, replacing
from .errors import ConfigError, OutputLockedError, OutputWriteError, ShardMergeError
from .methods.columns import error_mask, for_scorer, truncated_mask
from .models import cache_dir, check_processes
from .progress import ProgressCallback, ProgressEvent, quiet_third_party_bars
from .redaction import redact

logger = logging.getLogger(__name__)

#: Suffix of the work directory that sits beside an output (``scored`` -> ``scored.selectit-work``).
WORK_SUFFIX = ".selectit-work"
LOCK_NAME = "LOCK"
#: The input row index carried by every part (and through the Ray actors).
ROW_INDEX = "__selectit_row"
_META_KEY = b"hf_selectit_checkpoint"


def default_work_dir(output: Union[str, os.PathLike, None]) -> Path:
    """The checkpoints of a run that writes ``output``: ``<output>.selectit-work`` beside it
    (never the current directory); without an output, hf-selectit's cache dir + ``/work``."""
    if output:
        out = Path(os.path.expanduser(os.fspath(output)))
        return out.with_name(out.name + WORK_SUFFIX)
    return cache_dir() / "work"


def _read_lock(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe_holder(holder: dict) -> str:
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
            f"{holder.get('started', '?')}" + (f" ({holder['command']})" if holder.get("command") else ""))


@contextlib.contextmanager
def output_lock(work_dir: Union[str, os.PathLike], *, what: str = "") -> Iterator[Path]:
    """Hold ``<work_dir>/LOCK`` for the duration: one writer per output. The lock of a live
    process is an OutputLockedError naming it (and ``what``, the output); one left on this host
    by a process that no longer exists is taken over with a warning."""
    root = Path(work_dir)
    path = root / LOCK_NAME
    # The recorded command line is shown to whoever finds the lock: never with a token in it.
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
          "command": redact(" ".join([*map(os.path.basename, sys.argv[:1]), *sys.argv[1:]]))[:300]}
    tmp = root / f".{LOCK_NAME}.{os.getpid()}.{time.monotonic_ns()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(me))
    except OSError as exc:
        raise OutputWriteError(f"Could not create the lock {path}: {describe_os_error(exc)}. "
                               f"Check that {root.parent} is writable.") from exc
    try:
        for _ in range(3):
            try:
                os.link(tmp, path)  # a complete file, hard-linked into place
                break
            except FileExistsError:
                holder = _read_lock(path)
                if holder is None:  # released in between
                    continue
                pid = holder.get("pid")
                if (holder.get("host") == me["host"] and isinstance(pid, int)
                        and pid != os.getpid() and not pid_alive(pid)):
                    logger.warning("Taking over the lock %s left by a run that no longer exists (%s).",
                                   path, _describe_holder(holder))
                    path.unlink(missing_ok=True)
                    continue
                who = _describe_holder(holder) if holder else "an unreadable lock file"
                raise OutputLockedError(
                    f"Another hf-selectit run is writing{f' on {what}' if what else ''}: {who} holds {path}. "
                    f"Wait for it to finish or stop it; if no such run exists any more, delete {path}.")
        else:  # pragma: no cover - three races in a row
            raise OutputLockedError(f"Could not take the lock {path}: it changed hands repeatedly.")
    finally:
        tmp.unlink(missing_ok=True)
    try:
        yield path
    finally:
        if (_read_lock(path) or {}).get("pid") == os.getpid():
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            root.rmdir()  # only when nothing else is left in it


def remove_checkpoints(work_dir: Union[str, os.PathLike]) -> None:
    """Delete a work directory's checkpoints (after a successful run). The lock file, if this
    process holds it, stays until the lock is released; the folder goes once it is empty."""
    root = Path(work_dir)
    for child in root.iterdir() if root.is_dir() else ():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        elif child.name != LOCK_NAME:
            child.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        root.rmdir()


@dataclass
class ScoreStats:
    """What one model's scoring pass did: ``rows_scored`` (by this run) and ``rows_resumed``
    (from checkpoints) add up to ``rows``; ``shards`` counts the parts merged."""

    column_prefix: str
    model: Optional[str]
    rows: int = 0
    rows_scored: int = 0
    rows_resumed: int = 0
    shards: int = 0
    shards_scored: int = 0
    shards_resumed: int = 0
    shards_rescored: list = field(default_factory=list)  # names of invalid parts, deleted
    ok: int = 0
    truncated: int = 0
    errors: int = 0
    seconds: float = 0.0
    processes: int = 1
    engine: str = "local"
    work_dir: Optional[str] = None


def rows_fingerprint(ds: Any, start: int = 0, end: Optional[int] = None) -> str:
    """sha256 of rows ``start:end`` of ``ds`` (their Arrow data and features), independent of
    how the dataset was built or where its cache files are; hashed 10,000 rows at a time."""
    end = len(ds) if end is None else end
    arrow = ds.with_format("arrow")
    digest = hashlib.sha256()
    for lo in range(start, end, 10_000):
        table = arrow[lo:min(lo + 10_000, end)].combine_chunks()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()


def scorer_fingerprint(scorer: Any) -> str:
    """`datasets`' own hash of the scorer: what changes scores (model, revision, prompts, a local
    model's files, ...), not what does not (device, token budget): a restart elsewhere resumes."""
    from datasets.fingerprint import Hasher

    return Hasher.hash(scorer)


class Checkpoints:
    """The completion files of one model's pass over ``ds`` (see the module docstring), and what
    every engine does around its scoring (:meth:`run`). Raises ConfigError for an empty input or
    output columns that already exist in ``ds``."""

    def __init__(self, ds: Any, scorer: Any, *, work_dir: Union[str, os.PathLike], shard_rows: int = 256,
                 engine: str = "local", on_progress: Optional[ProgressCallback] = None, model_index: int = 0,
                 n_models: int = 1) -> None:
        self.n, self.columns, self.scorer = len(ds), list(scorer.output_columns), scorer
        config = getattr(scorer, "config", None)
        prefix = getattr(config, "column_prefix", None)
        if self.n == 0:
            raise ConfigError("The input has 0 rows: nothing to score.")
        clash = sorted(set(self.columns) & set(ds.column_names))
        if clash:
            raise ConfigError(f"The input already has the columns {clash}. Pass another column_prefix "
                              f"(now {prefix!r}) or drop them first.")
        identity = {"input_rows": rows_fingerprint(ds), "rows": self.n,
                    "scorer": scorer_fingerprint(scorer), "package_version": __version__}
        self.identity = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        self.root = Path(work_dir) / f"{prefix or ''}{self.identity}"
        self.run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.shard_rows, self.on_progress = shard_rows, on_progress
        self.model_index, self.n_models = model_index, n_models
        self.stats = ScoreStats(column_prefix=prefix or "", model=getattr(config, "model", None), rows=self.n,
                                engine=engine, work_dir=str(self.root))
        self.parts, self.n_shards = [], 0

    def emit(self, kind: str, rows: int, *, shard: int = 0, resumed: int = 0) -> None:
        if self.on_progress is not None:
            self.on_progress(ProgressEvent(self.model_index, self.n_models, shard, self.n_shards, rows, kind,
                                           total_rows=self.n, resumed=resumed))

    def run(self, score_parts: Callable[[list], Optional[dict]]) -> tuple[Any, ScoreStats, dict]:
        """Lock this folder, keep an earlier run's usable parts, call ``score_parts(chunks)`` with
        the row indices left (arrays of up to ``shard_rows``; it calls :meth:`write` per scored
        part, may return the provenance), merge. Returns ``(scores in input order, stats, info)``;
        raises ShardMergeError unless the parts hold every input row exactly once."""
        t0 = time.perf_counter()
        with output_lock(self.root):  # one writer of these rows and this config, also in the user cache
            for stale in self.root.glob(".part-*"):  # a killed run's half-written part: never renamed
                stale.unlink(missing_ok=True)
            self._done = np.zeros(self.n, dtype=bool)
            for path in sorted(self.root.glob("part-*.parquet")):
                problem, rows = self._check(path)
                if problem is not None:
                    logger.warning("Checkpoint %s %s: deleting it; its rows are scored again.", path, problem)
                    self.stats.shards_rescored.append(path.name)
                    path.unlink(missing_ok=True)
                    continue
                self._done[rows] = True
                self.parts.append(path)
                self.stats.shards_resumed += 1
                self.stats.rows_resumed += len(rows)
            todo = np.flatnonzero(~self._done)
            chunks = [todo[i:i + self.shard_rows] for i in range(0, len(todo), self.shard_rows)]
            self.n_shards = len(chunks) + self.stats.shards_resumed
            self.emit("plan", len(todo), resumed=self.stats.rows_resumed)
            info = score_parts(chunks) if chunks else None
            scores = self._merge()
            # Saved beside the parts, so a run resumed in full loads no model only to describe it.
            info = provenance.cached_info(self.scorer.info if info is None else lambda: info, self.root)
        if self.stats.rows_scored:
            self.stats.seconds = time.perf_counter() - t0
        return scores, self.stats, info

    def _check(self, path: Path) -> tuple[Optional[str], Any]:
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            return f"is unreadable ({type(exc).__name__}: {exc})", None
        if (table.schema.metadata or {}).get(_META_KEY, b"").decode(errors="replace") != self.identity:
            return "belongs to other input rows or another scoring config", None
        if sorted(table.column_names) != sorted([*self.columns, ROW_INDEX]):
            return f"has the columns {table.column_names}, not {self.columns}", None
        rows = table.column(ROW_INDEX).to_numpy()
        if len(rows) == 0 or rows.min() < 0 or rows.max() >= self.n or len(np.unique(rows)) != len(rows):
            return "holds row indices outside this input, or one twice", None
        if self._done[rows].any():
            return "holds rows that another checkpoint holds too", None
        return None, rows

    def write(self, rows: Any, table: Any) -> int:
        """Save the scorer's columns ``table`` of input rows ``rows``, less rows a part already holds
        (a retried task's second copy). Returns the number of new rows."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) != table.num_rows:
            raise ShardMergeError(f"The scorer returned {table.num_rows} rows for {len(rows)} input rows.")
        new = ~self._done[rows]
        if not new.all():
            logger.info("%d rows came back twice (a retried task); kept once.", int((~new).sum()))
            rows, table = rows[new], table.filter(pa.array(new))
        if not len(rows):
            return 0
        table = table.select(self.columns).append_column(ROW_INDEX, pa.array(rows, pa.int64()))
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: self.identity.encode()})
        final = self.root / f"part-{self.run_id}-{self.stats.shards_scored + 1:05d}.parquet"
        # The completion: written under a temporary name and renamed, so a part with its final
        # name is whole; a full disk or read-only folder is an OutputWriteError naming it.
        with replacing(final, what=f"the checkpoint of rows {rows.min()}-{rows.max()}") as tmp, open(tmp, "wb") as fh:
            pq.write_table(table, fh)
        self._done[rows] = True
        self.parts.append(final)
        self.stats.shards_scored += 1
        self.stats.rows_scored += len(rows)
        return len(rows)

    def _merge(self) -> Any:
        import datasets

        tables = [pq.read_table(p) for p in self.parts]
        table = pa.concat_tables(tables, promote_options="default") if tables else None
        rows = table.column(ROW_INDEX).to_numpy() if table is not None else np.zeros(0, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        if len(rows) != self.n or not np.array_equal(rows[order], np.arange(self.n)):
            raise ShardMergeError(f"The checkpoints in {self.root} hold {len(np.unique(rows))} distinct rows "
                                  f"in {len(rows)}; the input has {self.n}. Nothing was written.")
        table = table.take(pa.array(order)).drop_columns([ROW_INDEX]).replace_schema_metadata(None)
        scores, stats = datasets.Dataset(table.select(self.columns)), self.stats
        stats.shards = len(self.parts)
        column = getattr(for_scorer(self.scorer), "status", None)
        errors = error_mask(scores, column)
        stats.ok = len(scores)
        if errors is not None:
            stats.errors, stats.truncated = int(errors.sum()), int((truncated_mask(scores, column) & ~errors).sum())
            stats.ok -= stats.errors + stats.truncated
            if stats.errors:
                logger.warning("%d of %d rows could not be scored (see the %s column).", stats.errors, self.n, column)
        self.emit("merged", 0)
        return scores


def score_shards(ds: Any, scorer: Any, *, work_dir: Union[str, os.PathLike], shard_rows: int = 256,
                 batch_size: int = 64, num_proc: Optional[int] = None,
                 on_progress: Optional[ProgressCallback] = None, model_index: int = 0,
                 n_models: int = 1) -> tuple[Any, ScoreStats, dict]:
    """Score ``ds`` on this machine in checkpointed shards of ``shard_rows`` rows, each with
    ``Dataset.map(scorer, batched=True, with_rank=True)`` (one process, or ``num_proc`` workers,
    worker r on ``cuda:r``); any callable with ``.output_columns``, ``.info()`` and ``.config``
    works. Returns :meth:`Checkpoints.run`'s ``(scores, stats, info)``; a ConfigError for an
    empty input, clashing columns or a ``device_map`` model with ``num_proc``."""
    # A device_map model spans the machine's devices: one process, before any work.
    check_processes(getattr(scorer, "config", None), num_proc)
    num_proc = num_proc if (num_proc or 1) > 1 else None
    ckpt = Checkpoints(ds, scorer, work_dir=work_dir, shard_rows=shard_rows, on_progress=on_progress,
                       model_index=model_index, n_models=n_models)
    ckpt.stats.processes = num_proc or 1

    def score_parts(chunks: list) -> None:
        for i, rows in enumerate(chunks):
            shard = ckpt.stats.shards_resumed + i
            ckpt.emit("start", 0, shard=shard)
            reported = [0]

            def sink(k: int, shard: int = shard, size: int = len(rows)) -> None:
                k = min(k, size - reported[0])  # num_proc workers report nothing
                if k > 0:
                    reported[0] += k
                    ckpt.emit("rows", k, shard=shard)

            with progress.install(sink):
                part = ds.select(rows).map(
                    scorer, batched=True, batch_size=batch_size, with_rank=True, num_proc=num_proc,
                    remove_columns=ds.column_names, desc=f"shard {shard + 1}/{ckpt.n_shards}",
                    # The parts are the cache: nothing goes to the datasets cache, so a rerun is
                    # never a silent cache hit and no file is written outside the work directory.
                    keep_in_memory=True, load_from_cache_file=False)
            ckpt.write(rows, part.with_format("arrow")[:])
            ckpt.emit("shard", len(rows) - reported[0], shard=shard)

    with quiet_third_party_bars():
        return ckpt.run(score_parts)


def score_with(ds: Any, scorer: Any, engine: Callable[..., tuple], *, work_dir: Union[str, os.PathLike, None],
               keep_checkpoints: bool = False, **kwargs: Any) -> tuple[Any, ScoreStats]:
    """``engine(ds, scorer, work_dir=..., **kwargs)`` (:func:`score_shards`, or the Ray engine) with
    ``work_dir`` locked (None: the user cache, unlocked: its folders are named after the rows and
    config), checkpoints removed after success unless kept. Returns ``(ds + scores, stats)``."""
    root = Path(work_dir) if work_dir is not None else default_work_dir(None)
    with output_lock(root) if work_dir is not None else contextlib.nullcontext():
        scores, stats, info = engine(ds, scorer, work_dir=root, **kwargs)
        if not keep_checkpoints:
            remove_checkpoints(stats.work_dir)
    return add_scores(ds, [(scores, info)]), stats


def add_scores(ds: Any, results: list) -> Any:
    """``ds`` with every model's score columns appended in one step, and their provenance:
    ``results`` holds ``(scores, info)`` per model, as the engines return them."""
    import datasets

    scored = datasets.concatenate_datasets([ds, *(scores for scores, _ in results)], axis=1)
    for _, info in results:
        scored = provenance.attach_scorer_info(scored, info)
    return scored
