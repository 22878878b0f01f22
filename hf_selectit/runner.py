"""The one sharded runner behind every scoring entry point (one process or many).

Modelled on datatrove's executor (`executor/base.py`): the rows are cut into fixed shards of
``shard_rows`` rows; rank r of a world of W processes (W = 1 without a launcher) scores its share
of the shards that are not finished yet; every finished shard is written atomically beside a
*completion marker*; a killed run restarts and scores only the shards without a valid marker;
rank 0 merges the shards back into the original row order once all are done. The same code path
runs under ``torchrun --nproc_per_node N`` (gloo on CPU, NCCL-free) and alone.

Layout of a work directory (one per output, see :func:`default_work_dir`)::

    <work_dir>/LOCK                          pid, host, start time of the run that holds it
    <work_dir>/<prefix><fingerprint>/        one per (input rows, scoring config, shard size)
        run.json                             what the folder was computed from
        shard-00003/                         the shard's new columns (Dataset.save_to_disk)
        shard-00003.json                     its completion marker (written last)
        scorer_info.json                     the scorer's provenance

A marker records what its shard was computed from: the fingerprint of the shard's own input
rows, of the scoring config, the package version, the row range, and the size and sha256 of
each data file. On resume a shard whose marker does not match (missing, truncated, empty,
unreadable data; other rows; another config; another version) is scored again, with one warning
naming it, and is never merged.

Progress: the engine calls :func:`hf_selectit.progress.advance` after each micro-batch; the
runner turns that into :class:`ProgressEvent` s (``kind="rows"``), so rows/s and the ETA move
per micro-batch, not per shard.

Heavy imports (datasets, torch, accelerate) happen inside functions.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

from . import provenance
from ._version import __version__
from .atomic import describe_os_error, pid_alive, replacing, write_text
from .errors import ConfigError, OutputLockedError, OutputWriteError, ShardMergeError
from .redaction import redact, redact_mapping

logger = logging.getLogger(__name__)

#: Suffix of the work directory that sits beside an output (``scored`` -> ``scored.selectit-work``).
WORK_SUFFIX = ".selectit-work"
LOCK_NAME = "LOCK"
_MARKER_FORMAT = 1
_POLL_SECONDS = 0.2


# ------------------------------------------------------------------------------ world


@dataclass
class World:
    """The processes of this run: rank ``rank`` of ``size`` (1 without a launcher)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, value: Any) -> Any:
        """``value`` of rank 0, on every rank (a collective: every rank must call it)."""
        if self.size == 1:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def current_world() -> World:
    """The world of this process: from the launcher (torchrun / accelerate launch) if any.

    Under a launcher (``WORLD_SIZE`` > 1) this builds ``accelerate.PartialState``, with
    ``cpu=True`` when there is no CUDA (without it, accelerate reports a single process on a
    CPU-only machine), which sets up the process group (gloo on CPU).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World()
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    # Ranks meet at a collective only at the start of each model's pass; with several models a
    # rank that finished its shards waits there while rank 0 scores its last shard and merges,
    # which on a slow device can exceed torch's default 30 minutes. (A rank that dies makes the
    # launcher stop the job; the timeout is not what catches that.)
    state = PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(hours=48))
    return World(rank=state.process_index, size=state.num_processes,
                 local_rank=state.local_process_index)


def run_collectively(world: World, job: Callable[[], Any]) -> Any:
    """Run ``job`` on rank 0 only and give its result to every rank; an error raised by the job
    is raised on every rank (so no rank is left waiting at a later collective)."""
    outcome: tuple = (None, None)
    if world.is_main:
        try:
            outcome = (job(), None)
        except Exception as exc:  # noqa: BLE001 - re-raised below on every rank, not swallowed
            if world.size == 1:
                raise
            outcome = (None, exc)
    result, error = world.broadcast(outcome)
    if error is not None:
        raise error
    return result


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


# ------------------------------------------------------------------------- progress


@dataclass
class ProgressEvent:
    """What the runner reports to ``on_progress``.

    ``kind`` is one of:

    - ``"plan"``: a model's pass starts; ``rows`` rows will be scored by this process,
      ``resumed`` rows come from verified checkpoints (``shard``/``n_shards`` count all shards);
    - ``"start"``: this process starts scoring shard ``shard`` (``rows`` = 0);
    - ``"rows"``: ``rows`` more rows were scored (per micro-batch, from the engine);
    - ``"shard"``: shard ``shard`` is finished and saved; ``rows`` = its rows not yet reported;
    - ``"resumed"``: shard ``shard`` was loaded from its checkpoint (``rows`` = its rows);
    - ``"merged"``: the main process merged this model's shards (the pass is over).
    """

    model_index: int
    n_models: int
    shard: int
    n_shards: int
    rows: int
    kind: str
    total_rows: int = 0
    resumed: int = 0
    rank: int = 0
    world_size: int = 1

    @property
    def done(self) -> bool:  # the shard is finished (scored or resumed)
        return self.kind in ("shard", "resumed")


ProgressCallback = Callable[[ProgressEvent], None]


class TqdmProgress:
    """A tqdm bar over the rows of all models that this process scores: rows/s and ETA move per
    micro-batch; rows from checkpoints are taken off the total and shown as such, so the rate
    describes real scoring. Only rank 0 draws."""

    def __init__(self, *, file: Any = None, disable: bool = False) -> None:
        self.bar = None
        self.file = file
        self.disable = disable
        self.resumed = 0

    def __call__(self, event: ProgressEvent) -> None:
        if self.disable or event.rank != 0:
            return
        import sys

        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=event.total_rows * event.n_models, unit="row", desc="scoring",
                            dynamic_ncols=True, file=self.file or sys.stderr, smoothing=0.1)
        bar = self.bar
        if event.kind == "plan":
            bar.total -= event.total_rows - event.rows  # resumed, or scored by other ranks
            self.resumed += event.resumed
            if self.resumed:
                bar.set_postfix_str(f"{self.resumed} rows resumed from checkpoints", refresh=False)
            bar.refresh()
        elif event.kind == "rows" or event.kind == "shard":
            if event.rows:
                bar.update(event.rows)
        if event.kind in ("plan", "start", "shard"):
            model = f"model {event.model_index + 1}/{event.n_models} " if event.n_models > 1 else ""
            shard = min(event.shard + 1, event.n_shards)
            if bar.total or bar.n:
                bar.set_description(f"scoring {model}shard {shard}/{event.n_shards}", refresh=True)
            else:  # nothing to score in this process: no rate, no ETA
                bar.bar_format = (f"scoring: {self.resumed} rows resumed from checkpoints, "
                                  "nothing left to score")
                bar.refresh()
        if event.kind == "merged" and event.model_index + 1 == event.n_models:
            self.close()  # before the outputs are written

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextlib.contextmanager
def quiet_third_party_bars() -> Iterator[None]:
    """Keep transformers' ("Loading weights") and datasets' bars out of ours while scoring."""
    import datasets
    import transformers

    tf_on = transformers.utils.logging.is_progress_bar_enabled()
    ds_on = datasets.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if tf_on:
            transformers.utils.logging.enable_progress_bar()
        if ds_on:
            datasets.enable_progress_bars()


# ---------------------------------------------------------------------------- stats


@dataclass
class ScoreStats:
    """What one model's scoring pass did, over every process of the run.

    ``rows`` is the number of input rows; ``rows_scored`` the rows scored by this run,
    ``rows_resumed`` those taken from verified checkpoints (the two add up to ``rows``).
    """

    column_prefix: str
    model: Optional[str]
    rows: int = 0
    rows_scored: int = 0
    rows_resumed: int = 0
    shards: int = 0
    shards_scored: int = 0
    shards_resumed: int = 0
    shards_rescored: list = field(default_factory=list)  # invalid checkpoints scored again
    ok: int = 0
    truncated: int = 0
    errors: int = 0
    seconds: float = 0.0
    processes: int = 1
    work_dir: Optional[str] = None


# ------------------------------------------------------------------------ fingerprints


def rows_fingerprint(ds: Any, start: int = 0, end: Optional[int] = None) -> str:
    """sha256 of rows ``start:end`` of ``ds`` (their Arrow data and features), independent of
    how the dataset was built or where its cache files are.

    Example:
        >>> rows_fingerprint(ds, 0, 256)
        '3f1c...'
    """
    import pyarrow as pa

    end = len(ds) if end is None else end
    table = ds.with_format("arrow")[start:end]
    table = table.combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def scorer_fingerprint(scorer: Any) -> str:
    """The scoring config's fingerprint: `datasets`' own hash of the scorer, which covers what
    changes scores (model, revision, prompts, alpha, ..., a local model folder's files) and
    leaves out what does not (device, token budget), so a restart on another device resumes."""
    from datasets.fingerprint import Hasher

    return Hasher.hash(scorer)


def _scorer_config_dict(scorer: Any) -> dict:
    config = getattr(scorer, "config", None)
    try:
        return asdict(config)
    except TypeError:
        return {"repr": repr(scorer)}


def _files_digest(folder: Path) -> dict:
    out = {}
    for path in sorted(folder.iterdir()):
        if path.is_file():
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            out[path.name] = {"size": path.stat().st_size, "sha256": digest.hexdigest()}
    return out


# ------------------------------------------------------------------------------ shards


@dataclass
class _Shard:
    index: int
    start: int
    end: int
    fingerprint: str  # of its input rows

    @property
    def rows(self) -> int:
        return self.end - self.start

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}"

    def describe(self) -> str:
        return f"shard {self.index} (rows {self.start}-{self.end - 1})"


class _RankedScorer:
    """Passes this process's device rank to the scorer when `datasets` gives none (num_proc
    None), so rank r of a torchrun launch on GPUs uses ``cuda:<local rank>``."""

    def __init__(self, scorer: Any, offset: int) -> None:
        self.scorer = scorer
        self.offset = offset

    def __call__(self, batch: dict, rank: Optional[int] = None) -> dict:
        return self.scorer(batch, self.offset + (rank or 0))


class ShardedScoring:
    """One model's scoring pass over ``ds`` in checkpointed shards (see the module docstring).

    Call :meth:`run` on every rank with the same rows and the same scorer. Use
    :func:`score_shards` rather than this class directly.
    """

    def __init__(self, ds: Any, scorer: Any, *, work_dir: Union[str, os.PathLike], shard_rows: int,
                 batch_size: int, num_proc: Optional[int] = None, world: Optional[World] = None,
                 on_progress: Optional[ProgressCallback] = None, model_index: int = 0,
                 n_models: int = 1) -> None:
        self.ds = ds
        self.scorer = scorer
        self.work_dir = Path(work_dir)
        self.shard_rows = shard_rows
        self.batch_size = batch_size
        self.num_proc = num_proc if (num_proc or 1) > 1 else None
        self.world = world or World()
        self.on_progress = on_progress
        self.model_index = model_index
        self.n_models = n_models
        self.n = len(ds)
        self.columns = list(scorer.output_columns)
        self.scorer_fp = scorer_fingerprint(scorer)
        self.shards = [
            _Shard(i, start, min(start + shard_rows, self.n), rows_fingerprint(ds, start, min(start + shard_rows, self.n)))
            for i, start in enumerate(range(0, self.n, shard_rows))
        ]
        input_fp = hashlib.sha256("".join(s.fingerprint for s in self.shards).encode()).hexdigest()
        self.identity = {"input_rows": input_fp, "rows": self.n, "scorer": self.scorer_fp,
                         "shard_rows": shard_rows, "package_version": __version__}
        name = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:16]
        prefix = getattr(getattr(scorer, "config", None), "column_prefix", "") or ""
        self.root = self.work_dir / f"{prefix}{name}"
        self.run_id = ""

    # --- events -----------------------------------------------------------------------------

    def _emit(self, kind: str, shard: int, rows: int, *, resumed: int = 0) -> None:
        if self.on_progress is not None:
            self.on_progress(ProgressEvent(self.model_index, self.n_models, shard, len(self.shards), rows,
                                           kind, total_rows=self.n, resumed=resumed,
                                           rank=self.world.rank, world_size=self.world.size))

    # --- markers ------------------------------------------------------------------------------

    def _marker(self, shard: _Shard) -> Path:
        return self.root / f"{shard.name}.json"

    def _data(self, shard: _Shard) -> Path:
        return self.root / shard.name

    def check(self, shard: _Shard) -> Optional[str]:
        """Why the checkpoint of ``shard`` cannot be used (None: it is valid, or absent)."""
        try:
            return self._check(shard)
        except OSError as exc:  # a file that cannot be read or stat'ed is not a checkpoint
            return f"is unreadable ({type(exc).__name__}: {exc})"

    def _check(self, shard: _Shard) -> Optional[str]:
        marker, data = self._marker(shard), self._data(shard)
        if not marker.exists():
            return None
        try:
            meta = json.loads(marker.read_text())
        except (OSError, ValueError) as exc:
            return f"has an unreadable completion marker ({type(exc).__name__})"
        if not isinstance(meta, dict):
            return "has an unreadable completion marker"
        expected = {"start": shard.start, "end": shard.end, "rows": shard.rows,
                    "input_fingerprint": shard.fingerprint}
        if any(meta.get(k) != v for k, v in expected.items()):
            return (f"belongs to other input rows (rows {meta.get('start')}-"
                    f"{(meta.get('end') or 0) - 1} or other content)")
        if meta.get("scorer_fingerprint") != self.scorer_fp:
            return "was computed with another scoring config"
        if meta.get("package_version") != __version__:
            return f"was computed by hf-selectit {meta.get('package_version')}, not {__version__}"
        if not data.is_dir():
            return "is missing its data folder"
        files = meta.get("files") or {}
        present = {p.name: p for p in data.iterdir() if p.is_file()}
        for name, expect in files.items():
            path = present.get(name)
            if path is None:
                return f"is missing {name}"
            size = path.stat().st_size
            if size == 0 and expect.get("size"):
                return f"has an empty {name}"
            if size != expect.get("size"):
                return f"has a truncated or changed {name} ({size} bytes, expected {expect.get('size')})"
        digests = _files_digest(data)
        for name, expect in files.items():
            if digests.get(name, {}).get("sha256") != expect.get("sha256"):
                return f"has a changed {name} (its sha256 differs from the one recorded)"
        return None

    def _load(self, shard: _Shard) -> Any:
        """The shard's columns, read into memory (so removing the checkpoints later is safe)."""
        import datasets
        import pyarrow as pa

        try:
            part = datasets.load_from_disk(str(self._data(shard)), keep_in_memory=True)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise ShardMergeError(f"{shard.describe()} at {self._data(shard)} is unreadable: "
                                  f"{type(exc).__name__}: {exc}") from exc
        if len(part) != shard.rows or sorted(part.column_names) != sorted(self.columns):
            raise ShardMergeError(
                f"{shard.describe()} at {self._data(shard)} has {len(part)} rows and columns "
                f"{part.column_names}; expected {shard.rows} rows and {self.columns}.")
        return part

    def _discard(self, shard: _Shard) -> None:
        self._marker(shard).unlink(missing_ok=True)
        shutil.rmtree(self._data(shard), ignore_errors=True)

    # --- phases --------------------------------------------------------------------------------

    def _plan(self, stack: contextlib.ExitStack) -> dict:
        """Rank 0: take the folder's lock, verify the existing checkpoints and list the shards
        left to score."""
        self.root.mkdir(parents=True, exist_ok=True)
        # Also when the work directory is shared (the user cache without an output): two runs
        # of the same rows and config never write the same shards.
        stack.enter_context(output_lock(self.root))
        run_json = self.root / "run.json"
        if not run_json.exists():
            _write_json_atomically(run_json, {**self.identity, "scorer_config": _scorer_config_dict(self.scorer),
                                              "columns": self.columns})
        todo, rescored = [], []
        for shard in self.shards:
            problem = self.check(shard)
            if problem is None and self._marker(shard).exists():
                continue
            if problem is not None:
                logger.warning("Checkpoint %s in %s %s: scoring it again.", shard.describe(),
                               self._data(shard), problem)
                rescored.append(shard.index)
            self._discard(shard)
            todo.append(shard.index)
        run_id = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
        return {"todo": todo, "rescored": rescored, "run_id": run_id}

    def _score(self, shard: _Shard) -> None:
        """Score one shard and write it with its marker (data first, marker last)."""
        from . import progress

        self._emit("start", shard.index, 0)
        reported = 0

        def sink(n: int) -> None:
            nonlocal reported
            n = min(n, shard.rows - reported)
            if n > 0:
                reported += n
                self._emit("rows", shard.index, n)

        function = self.scorer
        if self.num_proc is None and self.world.size > 1:
            function = _RankedScorer(self.scorer, self.world.local_rank)
        t0 = time.perf_counter()
        previous = progress.install(sink)
        try:
            part = self.ds.select(range(shard.start, shard.end)).map(
                function, batched=True, batch_size=self.batch_size, with_rank=True,
                num_proc=self.num_proc, remove_columns=self.ds.column_names,
                # The checkpoint is the cache: nothing goes to the datasets cache, so a rerun is
                # never a silent cache hit and no file is written outside the work directory.
                keep_in_memory=True, load_from_cache_file=False,
                new_fingerprint=hashlib.sha256(f"{self.scorer_fp}{shard.fingerprint}".encode()).hexdigest()[:32],
                desc=f"shard {shard.index + 1}/{len(self.shards)}",
            )
        finally:
            progress.install(previous)
        seconds = time.perf_counter() - t0
        if len(part) != shard.rows:
            raise ShardMergeError(f"The scorer returned {len(part)} rows for {shard.describe()}; "
                                  f"expected {shard.rows}.")
        # Written under a temporary name and renamed (a half-written shard never looks finished);
        # a full disk or read-only folder is an OutputWriteError naming the checkpoint.
        with replacing(self._data(shard), what=f"the checkpoint of {shard.describe()}") as tmp:
            part.save_to_disk(str(tmp))
            files = _files_digest(tmp)
        meta = {"format": _MARKER_FORMAT, "index": shard.index, "start": shard.start, "end": shard.end,
                "rows": shard.rows, "input_fingerprint": shard.fingerprint,
                "scorer_fingerprint": self.scorer_fp, "package_version": __version__,
                "files": files, "run_id": self.run_id, "rank": self.world.rank,
                "seconds": seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        _write_json_atomically(self._marker(shard), meta)
        self._emit("shard", shard.index, shard.rows - reported)

    def _wait_for(self, shards: list) -> None:
        """Rank 0: wait until every other rank's shards have their markers (datatrove-style
        completion markers; no collective timeout, so a long shard elsewhere is fine; a rank
        that dies makes the launcher stop the job)."""
        waiting = [s for s in shards if not self._marker(s).exists()]
        last_log = time.monotonic()
        while waiting:
            time.sleep(_POLL_SECONDS)
            waiting = [s for s in waiting if not self._marker(s).exists()]
            if waiting and time.monotonic() - last_log > 60:
                logger.info("waiting for %d shards from other processes: %s", len(waiting),
                            [s.index for s in waiting[:10]])
                last_log = time.monotonic()

    def run(self) -> tuple[Optional[Any], ScoreStats]:
        """Score the missing shards (this rank's share) and, on rank 0, merge.

        Returns:
            ``(scores, stats)``: on rank 0 a Dataset of the scorer's columns only, in the
            original row order; None on other ranks. ``stats`` covers the whole run on rank 0.
        """
        with contextlib.ExitStack() as stack:
            return self._run(stack)

    def _run(self, stack: contextlib.ExitStack) -> tuple[Optional[Any], ScoreStats]:
        t0 = time.perf_counter()
        plan = run_collectively(self.world, lambda: self._plan(stack))
        self.run_id = plan["run_id"]
        todo = [self.shards[i] for i in plan["todo"]]
        mine = todo[self.world.rank::self.world.size]
        done_rows = self.n - sum(s.rows for s in todo)
        self._emit("plan", 0, sum(s.rows for s in mine), resumed=done_rows)
        for shard in self.shards:
            if shard.index not in plan["todo"]:
                self._emit("resumed", shard.index, shard.rows)
        for shard in mine:
            self._score(shard)
        if not self.world.is_main:
            return None, ScoreStats(column_prefix="", model=None, rows=self.n)
        self._wait_for(todo)
        scores, stats = self._merge(plan)
        if stats.shards_scored:
            # Wall time of the whole pass (all processes at work in parallel), for rows/s.
            stats.seconds = time.perf_counter() - t0
        self._emit("merged", len(self.shards) - 1, 0)
        return scores, stats

    def _merge(self, plan: dict) -> tuple[Any, ScoreStats]:
        import datasets

        stats = ScoreStats(column_prefix=getattr(self.scorer.config, "column_prefix", ""),
                           model=getattr(self.scorer.config, "model", None), rows=self.n,
                           shards=len(self.shards), shards_rescored=list(plan["rescored"]),
                           processes=self.world.size, work_dir=str(self.root))
        parts = []
        position = 0
        for shard in self.shards:
            problem = self.check(shard)
            if problem is None and not self._marker(shard).exists():
                problem = "is missing"
            if problem is not None:
                # Changed after it was written (or lost): never merged; score it here.
                logger.warning("Checkpoint %s in %s %s: scoring it again.", shard.describe(),
                               self._data(shard), problem)
                stats.shards_rescored.append(shard.index)
                self._discard(shard)
                self._score(shard)
            meta = json.loads(self._marker(shard).read_text())
            if meta["start"] != position:
                raise ShardMergeError(f"{shard.describe()} starts at row {meta['start']}, expected "
                                      f"{position}: the shards do not cover the input exactly.")
            position = meta["end"]
            part = self._load(shard)
            parts.append(part)
            if meta.get("run_id") == self.run_id:
                stats.shards_scored += 1
                stats.rows_scored += shard.rows
            else:
                stats.shards_resumed += 1
                stats.rows_resumed += shard.rows
        scores = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
        if position != self.n or len(scores) != self.n or stats.rows_scored + stats.rows_resumed != self.n:
            raise ShardMergeError(f"The shards hold {len(scores)} rows (up to row {position}); the "
                                  f"input has {self.n}. Nothing was written.")
        _count_status(scores, self.scorer, stats)
        return scores, stats


def _write_json_atomically(path: Path, data: Any) -> None:
    write_text(path, json.dumps(redact_mapping(data), indent=2, sort_keys=True, default=str))


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


def score_shards(ds: Any, scorer: Any, *, work_dir: Union[str, os.PathLike], shard_rows: int = 256,
                 batch_size: int = 64, num_proc: Optional[int] = None, world: Optional[World] = None,
                 on_progress: Optional[ProgressCallback] = None, model_index: int = 0,
                 n_models: int = 1) -> tuple[Optional[Any], ScoreStats, Optional[dict]]:
    """Score ``ds`` with ``scorer`` in checkpointed shards, on every process of the launch.

    Works for any scorer object of the package's interface: a callable for
    ``ds.map(batched=True, with_rank=True)`` with ``.output_columns``, ``.info()`` and
    ``.config``. Call it on every rank with the same rows; the caller holds the output's lock
    (:func:`output_lock`) on rank 0.

    Args:
        ds: the input rows (not modified).
        scorer: the scorer.
        work_dir: the output's work directory (:func:`default_work_dir`).
        shard_rows: rows per checkpointed shard.
        batch_size: rows per ``Dataset.map`` batch.
        num_proc: ``Dataset.map`` worker processes inside this process.
        world: the processes of the run (default: :func:`current_world`).
        on_progress: receives :class:`ProgressEvent` s.
        model_index, n_models: position of this model in a multi-model run (for progress).

    Returns:
        ``(scores, stats, info)``: on rank 0 the scorer's columns in the original row order,
        the pass's numbers over all processes, and the scorer's provenance; on other ranks
        ``(None, stats, None)``.

    Raises:
        ConfigError: an empty input, or output columns that already exist in ``ds``.
        ShardMergeError: the shards do not add up to the input rows exactly.

    Example:
        >>> scores, stats, info = score_shards(ds, SelectITScorer(), work_dir="out.selectit-work")
    """
    if len(ds) == 0:
        raise ConfigError("The input has 0 rows: nothing to score.")
    clash = sorted(set(scorer.output_columns) & set(ds.column_names))
    if clash:
        prefix = getattr(getattr(scorer, "config", None), "column_prefix", None)
        raise ConfigError(
            f"The input already has the columns {clash}. Pass another column_prefix "
            f"(now {prefix!r}) or drop them first."
        )
    world = world or current_world()
    job = ShardedScoring(ds, scorer, work_dir=work_dir, shard_rows=shard_rows, batch_size=batch_size,
                         num_proc=num_proc, world=world, on_progress=on_progress,
                         model_index=model_index, n_models=n_models)
    with quiet_third_party_bars():
        scores, stats = job.run()
        info = provenance.cached_info(scorer, job.root) if world.is_main else None
    return scores, stats, info

