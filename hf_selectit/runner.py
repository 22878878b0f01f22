"""Checkpointed scoring on one machine, and the checkpoints that every engine shares.

The rows still to score are cut into parts of ``shard_rows`` rows. The local engine (this module)
scores each with ``Dataset.map`` (one process, or ``num_proc`` workers); the Ray engine
(:mod:`hf_selectit.ray_runner`) streams them back from its actors. Either way this process alone
writes each finished part: a parquet file of the scorer's columns plus the input row index, first
under a temporary name, then renamed, so a file with its final name is complete (a *completion
file*). A killed run started again scores only the rows no part holds, with either engine. At the
end the parts are put back in input order and checked: every input row exactly once.

Layout of a work directory (one per output, see :func:`default_work_dir`)::

    <work_dir>/LOCK                          pid, host, start time of the run that holds it
    <work_dir>/<prefix><fingerprint>/        one per (input rows, scoring config, package version)
        part-<run id>-00003.parquet          scores of some rows + their row index (written last)
        scorer_info.json                     the scorer's provenance

A part is used only when it is readable, carries this folder's identity in its metadata (so a
part copied from another config's folder is refused), and holds row indices of this input that
no other part holds; any other part is deleted with one warning naming it, and its rows are
scored again.
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

from . import provenance
from ._version import __version__
from .atomic import describe_os_error, pid_alive, replacing
from .errors import ConfigError, OutputLockedError, OutputWriteError, ShardMergeError
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
    """Where the checkpoints of a run that writes ``output`` go: ``<output>.selectit-work``
    beside it (a folder, parquet or jsonl output alike), so two outputs never share one and
    nothing is written into the current directory. Without an output: hf-selectit's cache dir
    (``$HF_SELECTIT_CACHE`` or the user cache dir) + ``/work``.

    Example:
        >>> default_work_dir("runs/scored.parquet")
        PosixPath('runs/scored.parquet.selectit-work')
    """
    if output:
        out = Path(os.path.expanduser(os.fspath(output)))
        return out.with_name(out.name + WORK_SUFFIX)
    from .models import cache_dir

    return cache_dir() / "work"


# ------------------------------------------------------------------------------ lock


_HELD: dict[str, int] = {}  # lock path -> how many times this process holds it


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
    """Hold ``<work_dir>/LOCK`` for the duration (one writer per output); re-entrant within one
    process. The lock file (pid, host, start time, command) is created atomically; a lock of a
    live process fails at once, one left on this host by a process that no longer exists is
    taken over with a warning.

    Args:
        work_dir: the output's work directory (created if missing).
        what: the output's name, for the error message.

    Raises:
        OutputLockedError: another live run holds the lock (the message names it).

    Example:
        >>> with output_lock(default_work_dir("scored")):
        ...     ...
    """
    root = Path(work_dir)
    path = root / LOCK_NAME
    key = os.fspath(path.absolute())
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield path
        finally:
            _HELD[key] -= 1
        return
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
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    continue
                target = f" on {what}" if what else ""
                who = _describe_holder(holder) if holder else "an unreadable lock file"
                raise OutputLockedError(
                    f"Another hf-selectit run is writing{target}: {who} holds {path}. Wait for it "
                    f"to finish or stop it; if no such run exists any more, delete {path}.")
        else:  # pragma: no cover - three races in a row
            raise OutputLockedError(f"Could not take the lock {path}: it changed hands repeatedly.")
    finally:
        tmp.unlink(missing_ok=True)
    _HELD[key] = 1
    try:
        yield path
    finally:
        _HELD.pop(key, None)
        if (_read_lock(path) or {}).get("pid") == os.getpid():
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            root.rmdir()  # only when nothing else is left in it


def remove_checkpoints(work_dir: Union[str, os.PathLike]) -> None:
    """Delete a work directory's checkpoints (after a successful run). The lock file, if this
    process holds it, stays until the lock is released; the folder goes once it is empty."""
    root = Path(work_dir)
    if not root.is_dir():
        return
    for child in root.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        elif child.name != LOCK_NAME:
            child.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        root.rmdir()


@dataclass
class ScoreStats:
    """What one model's scoring pass did. ``rows_scored`` (by this run) and ``rows_resumed``
    (from an earlier run's checkpoints) add up to ``rows``; ``shards`` counts the parts
    (completion files) the scores were merged from."""

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
    how the dataset was built or where its cache files are; hashed 10,000 rows at a time.

    Example:
        >>> rows_fingerprint(ds, 0, 256)
        '3f1c...'
    """
    import pyarrow as pa

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
    """`datasets`' own hash of the scorer: it covers what changes scores (model, revision,
    prompts, alpha, ..., a local model folder's files) and leaves out what does not (device,
    token budget), so a restart on another device resumes."""
    from datasets.fingerprint import Hasher

    return Hasher.hash(scorer)


# ------------------------------------------------------------------------- checkpoints


class Checkpoints:
    """The completion files of one model's pass over ``ds`` (see the module docstring), and what
    every engine does around its scoring (:meth:`run`).

    Raises:
        ConfigError: an empty input, or output columns that already exist in ``ds``.
    """

    def __init__(self, ds: Any, scorer: Any, *, work_dir: Union[str, os.PathLike], shard_rows: int = 256,
                 engine: str = "local", on_progress: Optional[ProgressCallback] = None, model_index: int = 0,
                 n_models: int = 1) -> None:
        self.n, self.columns, self.scorer = len(ds), list(scorer.output_columns), scorer
        prefix = getattr(getattr(scorer, "config", None), "column_prefix", None)
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
        self.shard_rows, self.on_progress, self.model_index, self.n_models = shard_rows, on_progress, model_index, n_models
        self.stats = ScoreStats(column_prefix=prefix or "", model=getattr(getattr(scorer, "config", None), "model", None),
                                rows=self.n, engine=engine, work_dir=str(self.root))
        self.parts: list[Path] = []
        self.n_shards = self._seq = 0

    def emit(self, kind: str, rows: int, *, shard: int = 0, resumed: int = 0) -> None:
        if self.on_progress is not None:
            self.on_progress(ProgressEvent(self.model_index, self.n_models, shard, self.n_shards, rows, kind,
                                           total_rows=self.n, resumed=resumed))

    def run(self, score_parts: Callable[[list], Optional[dict]]) -> tuple[Any, ScoreStats, dict]:
        """Hold this folder's lock, keep the usable parts an earlier run left, call
        ``score_parts(rows)`` with the row indices still to score (a list of arrays of up to
        ``shard_rows`` rows; it calls :meth:`write` per scored part and may return the scorer's
        provenance), then merge.

        Returns:
            ``(scores, stats, info)``: the scorer's columns of every input row in input order,
            the pass's numbers, and the scorer's provenance.

        Raises:
            ShardMergeError: the parts do not hold every input row exactly once.
        """
        import numpy as np

        t0 = time.perf_counter()
        with output_lock(self.root):  # one writer of these rows and this config, also in the user cache
            self.root.mkdir(parents=True, exist_ok=True)
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
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

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
        """Save one scored part: ``table`` holds the scorer's columns of input rows ``rows``
        (indices, in the table's order). Rows some part already holds (a retried task's second
        copy) are left out. Returns the number of new rows."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

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
        self._seq += 1
        final = self.root / f"part-{self.run_id}-{self._seq:05d}.parquet"
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
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .methods.columns import error_mask, for_scorer, truncated_mask

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
                logger.warning("%d of %d rows could not be scored (see the %s column).", stats.errors, stats.rows, column)
        self.emit("merged", 0)
        return scores


# ---------------------------------------------------------------------------- engines


def score_shards(ds: Any, scorer: Any, *, work_dir: Union[str, os.PathLike], shard_rows: int = 256,
                 batch_size: int = 64, num_proc: Optional[int] = None,
                 on_progress: Optional[ProgressCallback] = None, model_index: int = 0,
                 n_models: int = 1) -> tuple[Any, ScoreStats, dict]:
    """Score ``ds`` on this machine in checkpointed shards of ``shard_rows`` rows, each with
    ``Dataset.map(scorer, batched=True, with_rank=True)`` (one process, or ``num_proc``
    workers, worker r on ``cuda:r``). Any object of the scorer interface works (a callable with
    ``.output_columns``, ``.info()`` and ``.config``). The caller holds the output's lock.

    Returns:
        ``(scores, stats, info)`` of :meth:`Checkpoints.run`.

    Raises:
        ConfigError: an empty input, clashing columns, a ``device_map`` model with ``num_proc``.
        ShardMergeError: the parts do not add up to the input rows exactly.

    Example:
        >>> scores, stats, info = score_shards(ds, SelectITScorer(), work_dir="out.selectit-work")
    """
    from . import progress
    from .models import check_processes

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

            previous = progress.install(sink)
            try:
                part = ds.select(rows).map(
                    scorer, batched=True, batch_size=batch_size, with_rank=True, num_proc=num_proc,
                    remove_columns=ds.column_names, desc=f"shard {shard + 1}/{ckpt.n_shards}",
                    # The parts are the cache: nothing goes to the datasets cache, so a rerun is
                    # never a silent cache hit and no file is written outside the work directory.
                    keep_in_memory=True, load_from_cache_file=False)
            finally:
                progress.install(previous)
            ckpt.write(rows, part.with_format("arrow")[:])
            ckpt.emit("shard", len(rows) - reported[0], shard=shard)

    with quiet_third_party_bars():
        return ckpt.run(score_parts)


def score_with(ds: Any, scorer: Any, engine: Callable[..., tuple], *, work_dir: Union[str, os.PathLike, None],
               keep_checkpoints: bool = False, **kwargs: Any) -> tuple[Any, ScoreStats]:
    """``engine(ds, scorer, work_dir=..., **kwargs)`` (:func:`score_shards`, or the Ray engine),
    with ``work_dir`` locked for the call (None: the user cache, unlocked: its folders are named
    after the rows and the config) and the checkpoints removed after success unless
    ``keep_checkpoints``. Returns ``(ds with the scores and their provenance, stats)``."""
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
