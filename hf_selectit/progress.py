"""Row progress of scoring work: the engine reports finished rows (:func:`advance`, a no-op
unless a sink is installed, so `ds.map(scorer)` costs nothing extra), the runners turn them into
:class:`ProgressEvent` s, and the CLI draws them (:class:`TqdmProgress`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

_SINK: Optional[Callable[[int], None]] = None


@contextlib.contextmanager
def install(sink: Callable[[int], None]) -> Iterator[None]:
    """Send :func:`advance`'s rows to `sink(n_rows)` for the duration."""
    global _SINK
    previous, _SINK = _SINK, sink
    try:
        yield
    finally:
        _SINK = previous


def advance(n_rows: int) -> None:
    """Report `n_rows` more rows finished (called by the engine after each micro-batch)."""
    if _SINK is not None and n_rows:
        _SINK(n_rows)


@dataclass
class ProgressEvent:
    """What a runner reports to ``on_progress``.

    ``kind`` is one of:

    - ``"plan"``: a model's pass starts; ``rows`` rows will be scored, ``resumed`` come from
      checkpoints (``n_shards`` counts all parts);
    - ``"start"``: shard ``shard`` starts (``rows`` = 0; the local engine);
    - ``"rows"``: ``rows`` more rows were scored (per micro-batch locally, per block on Ray);
    - ``"shard"``: shard ``shard`` is finished and saved; ``rows`` = its rows not yet reported;
    - ``"merged"``: this model's parts were merged (the pass is over).
    """

    model_index: int
    n_models: int
    shard: int
    n_shards: int
    rows: int
    kind: str
    total_rows: int = 0
    resumed: int = 0


ProgressCallback = Callable[[ProgressEvent], None]


class TqdmProgress:
    """A tqdm bar over the rows of all models: rows/s and ETA move per micro-batch (per block on
    Ray); rows from checkpoints are taken off the total and shown as such, so the rate describes
    real scoring."""

    def __init__(self, *, file: Any = None) -> None:
        self.bar, self.file, self.resumed = None, file, 0

    def __call__(self, event: ProgressEvent) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=event.total_rows * event.n_models, unit="row", desc="scoring",
                            dynamic_ncols=True, file=self.file, smoothing=0.1)
        bar = self.bar
        if event.kind == "plan":
            bar.total -= event.total_rows - event.rows  # resumed from checkpoints
            self.resumed += event.resumed
            if self.resumed:
                bar.set_postfix_str(f"{self.resumed} rows resumed from checkpoints", refresh=False)
        elif event.kind in ("rows", "shard") and event.rows:
            bar.update(event.rows)
        if event.kind in ("plan", "start"):
            model = f"model {event.model_index + 1}/{event.n_models} " if event.n_models > 1 else ""
            shard = min(event.shard + 1, event.n_shards)
            if bar.total or bar.n:
                bar.set_description(f"scoring {model}shard {shard}/{event.n_shards}", refresh=True)
            else:  # nothing to score: no rate, no ETA
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
