"""Checkpointed scoring on one machine, and the checkpoints that every engine shares.

The rows are scored in parts. The local engine (this module) cuts the rows still to score into
shards of ``shard_rows`` rows and scores each with ``Dataset.map`` (one process, or ``num_proc``
workers); the Ray engine (:mod:`hf_selectit.ray_runner`) streams blocks back from its actors.
Either way this process alone writes each finished part: a parquet file of the scorer's columns
plus the input row index, first under a temporary name, then renamed, so a file with its final
name is complete (a *completion file*). A run that is killed and started again reads the parts
and scores only the rows none of them holds, with either engine. At the end the parts are put
back in input order and checked: every input row exactly once.

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


# --------------------------------------------------------------------------- work dir


def default_work_dir(output: Union[str, os.PathLike, None]) -> Path:
    """Where the checkpoints of a run that writes ``output`` go: ``<output>.selectit-work``
    beside it (for a folder, a parquet or a jsonl output alike), so two outputs never share one,
    and nothing is written into the current directory. Without an output: hf-selectit's cache
    dir (``$HF_SELECTIT_CACHE`` or the user cache dir) + ``/work``.

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
    """Hold ``<work_dir>/LOCK`` for the duration (one writer per output).

    The lock file is created atomically (a complete file is hard-linked into place) and holds
    the pid, host and start time. A lock of a live process fails at once; a lock left on this
    host by a process that no longer exists is taken over with a warning. Re-entrant within one
    process.

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
    import sys

    # The recorded command line is shown to whoever finds the lock: never with a token in it.
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
          "command": redact(" ".join(os.path.basename(a) if i == 0 else a
                                     for i, a in enumerate(sys.argv)))[:300]}
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
                os.link(tmp, path)
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
                    f"to finish or stop it; if no such run exists any more, delete {path}."
                )
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
        if child.name == LOCK_NAME:
            continue
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        root.rmdir()


# ---------------------------------------------------------------------------- stats


@dataclass
class ScoreStats:
    """What one model's scoring pass did.

    ``rows`` is the number of input rows; ``rows_scored`` the rows scored by this run,
    ``rows_resumed`` those taken from the checkpoints of an earlier run (the two add up to
    ``rows``). ``shards`` counts the parts (completion files) the scores were merged from.
    """

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


# ------------------------------------------------------------------------ fingerprints


def rows_fingerprint(ds: Any, start: int = 0, end: Optional[int] = None) -> str:
    """sha256 of rows ``start:end`` of ``ds`` (their Arrow data and features), independent of
    how the dataset was built or where its cache files are. Hashed 10,000 rows at a time, so a
    dataset of millions of rows is never serialised whole.

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
    """The scoring config's fingerprint: `datasets`' own hash of the scorer, which covers what
    changes scores (model, revision, prompts, alpha, ..., a local model folder's files) and
    leaves out what does not (device, token budget), so a restart on another device resumes."""
    from datasets.fingerprint import Hasher

    return Hasher.hash(scorer)


# ------------------------------------------------------------------------- checkpoints


class Checkpoints:
    """The completion files of one model's pass over ``ds`` (see the module docstring).

    Use: :meth:`open` (reads and checks the parts an earlier run left), :meth:`todo` (row
    indices still to score), :meth:`write` for each newly scored part, :meth:`merge`.
    """

    def __init__(self, ds: Any, scorer: Any, *, work_dir: Union[str, os.PathLike],
                 on_progress: Optional[ProgressCallback] = None, model_index: int = 0,
                 n_models: int = 1) -> None:
        self.n = len(ds)
        self.columns = list(scorer.output_columns)
        self.scorer = scorer
        identity = {"input_rows": rows_fingerprint(ds), "rows": self.n,
                    "scorer": scorer_fingerprint(scorer), "package_version": __version__}
        self.identity = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        prefix = getattr(getattr(scorer, "config", None), "column_prefix", "") or ""
        self.root = Path(work_dir) / f"{prefix}{self.identity}"
        self.run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.on_progress, self.model_index, self.n_models = on_progress, model_index, n_models
        self.stats = ScoreStats(column_prefix=prefix, model=getattr(getattr(scorer, "config", None), "model", None),
                                rows=self.n, work_dir=str(self.root))
        self._parts: list[Path] = []
        self._done = None  # numpy bool mask of the rows some part holds
        self._seq = 0

    def emit(self, kind: str, rows: int, *, shard: int = 0, n_shards: int = 0, resumed: int = 0) -> None:
        if self.on_progress is not None:
            self.on_progress(ProgressEvent(self.model_index, self.n_models, shard, n_shards, rows, kind,
                                           total_rows=self.n, resumed=resumed))

    def open(self) -> None:
        """Read the parts already on disk; an unusable one is deleted with one warning naming it."""
        import numpy as np

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
            self._parts.append(path)
            self.stats.shards_resumed += 1
            self.stats.rows_resumed += len(rows)

    def _check(self, path: Path) -> tuple[Optional[str], Any]:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            return f"is unreadable ({type(exc).__name__}: {exc})", None
        meta = (table.schema.metadata or {}).get(_META_KEY, b"")
        if meta.decode(errors="replace") != self.identity:
            return "belongs to other input rows or another scoring config", None
        if sorted(table.column_names) != sorted([*self.columns, ROW_INDEX]):
            return f"has the columns {table.column_names}, not {self.columns}", None
        rows = table.column(ROW_INDEX).to_numpy()
        if len(rows) == 0 or rows.min() < 0 or rows.max() >= self.n or len(np.unique(rows)) != len(rows):
            return "holds row indices outside this input, or one twice", None
        if self._done[rows].any():
            return "holds rows that another checkpoint holds too", None
        return None, rows

    def todo(self) -> Any:
        """Row indices (ascending numpy array) that no part holds yet."""
        import numpy as np

        return np.flatnonzero(~self._done)

    def write(self, rows: Any, table: Any) -> int:
        """Save one scored part: ``table`` holds the scorer's columns of input rows ``rows``
        (a sequence of indices, in the table's order). Rows some part already holds (a retried
        task's second copy) are left out. Returns the number of new rows."""
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
        self._parts.append(final)
        self.stats.shards_scored += 1
        self.stats.rows_scored += len(rows)
        return len(rows)

    def merge(self) -> Any:
        """The scorer's columns of every input row, in input order, as a Dataset.

        Raises:
            ShardMergeError: the parts do not hold every input row exactly once.
        """
        import datasets
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = [pq.read_table(p) for p in self._parts]
        table = pa.concat_tables(tables, promote_options="default") if tables else None
        rows = table.column(ROW_INDEX).to_numpy() if table is not None else np.zeros(0, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        if len(rows) != self.n or not np.array_equal(rows[order], np.arange(self.n)):
            raise ShardMergeError(f"The checkpoints in {self.root} hold {len(np.unique(rows))} distinct rows "
                                  f"in {len(rows)}; the input has {self.n}. Nothing was written.")
        table = table.take(pa.array(order)).drop_columns([ROW_INDEX]).replace_schema_metadata(None)
        scores = datasets.Dataset(table.select(self.columns))
        self.stats.shards = len(self._parts)
        _count_status(scores, self.scorer, self.stats)
        self.emit("merged", 0)
        return scores

    def info(self, describe: Callable[[], dict]) -> dict:
        """The scorer's provenance: read from ``scorer_info.json`` beside the parts, else
        ``describe()`` (which loads the model), saved there so a fully resumed run loads nothing."""
        return provenance.cached_info(describe, self.root)


def _count_status(scores: Any, scorer: Any, stats: ScoreStats) -> None:
    from .methods.columns import error_mask, for_scorer, truncated_mask

    cols = for_scorer(scorer)
    column = cols.status if cols is not None else None
    errors = error_mask(scores, column)
    if errors is None:
        stats.ok = len(scores)
        return
    truncated = truncated_mask(scores, column) & ~errors
    stats.errors, stats.truncated = int(errors.sum()), int(truncated.sum())
    stats.ok = len(scores) - stats.errors - stats.truncated
    if stats.errors:
        logger.warning("%d of %d rows could not be scored (see the %s column).",
                       stats.errors, stats.rows, column)


def check_input(ds: Any, scorer: Any) -> None:
    """Refuse an empty input, or one that already has the scorer's output columns.

    Raises:
        ConfigError: naming the clash and the fix (another ``column_prefix``).
    """
    if len(ds) == 0:
        raise ConfigError("The input has 0 rows: nothing to score.")
    clash = sorted(set(scorer.output_columns) & set(ds.column_names))
    if clash:
        prefix = getattr(getattr(scorer, "config", None), "column_prefix", None)
        raise ConfigError(f"The input already has the columns {clash}. Pass another column_prefix "
                          f"(now {prefix!r}) or drop them first.")


# ----------------------------------------------------------------------- local engine


def score_shards(ds: Any, scorer: Any, *, work_dir: Union[str, os.PathLike], shard_rows: int = 256,
                 batch_size: int = 64, num_proc: Optional[int] = None,
                 on_progress: Optional[ProgressCallback] = None, model_index: int = 0,
                 n_models: int = 1) -> tuple[Any, ScoreStats, dict]:
    """Score ``ds`` with ``scorer`` on this machine, in checkpointed shards (the local engine).

    Works for any scorer object of the package's interface: a callable for
    ``ds.map(batched=True, with_rank=True)`` with ``.output_columns``, ``.info()`` and
    ``.config``. The caller holds the output's lock (:func:`output_lock`).

    Args:
        ds: the input rows (not modified).
        scorer: the scorer.
        work_dir: the output's work directory (:func:`default_work_dir`).
        shard_rows: rows per checkpointed shard.
        batch_size: rows per ``Dataset.map`` batch.
        num_proc: ``Dataset.map`` worker processes (worker r uses ``cuda:r``).
        on_progress: receives :class:`~hf_selectit.progress.ProgressEvent` s.
        model_index, n_models: position of this model in a multi-model run (for progress).

    Returns:
        ``(scores, stats, info)``: the scorer's columns in the original row order, the pass's
        numbers and the scorer's provenance.

    Raises:
        ConfigError: an empty input, or output columns that already exist in ``ds``.
        ShardMergeError: the parts do not add up to the input rows exactly.

    Example:
        >>> scores, stats, info = score_shards(ds, SelectITScorer(), work_dir="out.selectit-work")
    """
    from . import progress

    check_input(ds, scorer)
    t0 = time.perf_counter()
    ckpt = Checkpoints(ds, scorer, work_dir=work_dir, on_progress=on_progress, model_index=model_index,
                       n_models=n_models)
    num_proc = num_proc if (num_proc or 1) > 1 else None
    ckpt.stats.processes = num_proc or 1
    # The folder of these rows and this config has one writer, also in the shared user cache.
    with quiet_third_party_bars(), output_lock(ckpt.root):
        ckpt.open()
        todo = ckpt.todo()
        shards = [todo[i:i + shard_rows] for i in range(0, len(todo), shard_rows)]
        n_shards = len(shards) + ckpt.stats.shards_resumed
        ckpt.emit("plan", len(todo), n_shards=n_shards, resumed=ckpt.stats.rows_resumed)
        for i, rows in enumerate(shards):
            shard = ckpt.stats.shards_resumed + i
            ckpt.emit("start", 0, shard=shard, n_shards=n_shards)
            reported = [0]

            def sink(k: int, shard: int = shard, size: int = len(rows)) -> None:
                k = min(k, size - reported[0])  # num_proc workers report nothing
                if k > 0:
                    reported[0] += k
                    ckpt.emit("rows", k, shard=shard, n_shards=n_shards)

            previous = progress.install(sink)
            try:
                part = ds.select(rows).map(
                    scorer, batched=True, batch_size=batch_size, with_rank=True, num_proc=num_proc,
                    remove_columns=ds.column_names, desc=f"shard {shard + 1}/{n_shards}",
                    # The parts are the cache: nothing goes to the datasets cache, so a rerun is
                    # never a silent cache hit and no file is written outside the work directory.
                    keep_in_memory=True, load_from_cache_file=False)
            finally:
                progress.install(previous)
            ckpt.write(rows, part.with_format("arrow")[:])
            ckpt.emit("shard", len(rows) - reported[0], shard=shard, n_shards=n_shards)
        scores = ckpt.merge()
        info = ckpt.info(scorer.info)
    if ckpt.stats.rows_scored:
        ckpt.stats.seconds = time.perf_counter() - t0
    return scores, ckpt.stats, info
