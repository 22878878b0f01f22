"""The score histogram committed with every published version (all rows vs kept rows)."""

from __future__ import annotations

import logging
import math
import os
from typing import Optional, Sequence

logger = logging.getLogger(__name__)

HISTOGRAM_FILENAME = "selectit_histogram.png"


def _finite(values: Sequence) -> list[float]:
    # Rows that failed to score carry NaN/None; they are counted in the report, not plotted.
    out = []
    for v in values:
        if v is None:
            continue
        f = float(v)
        if math.isfinite(f):
            out.append(f)
    return out


def score_histogram(
    *,
    all_scores: Optional[Sequence[float]],
    kept_scores: Sequence[float],
    path: str | os.PathLike,
    column: str = "selectit_sentence_score",
    bins: int = 40,
) -> str:
    """Draw a histogram of the scores of all rows and of the kept rows into a PNG file.

    Args:
        all_scores: Scores of every scored row (None when the scored dataset is unknown; then
            only the kept rows are drawn).
        kept_scores: Scores of the rows in the published subset.
        path: Where to write the PNG.
        column: Name of the score column, used for the axis label.
        bins: Number of histogram bins (shared by both series so their bars line up).

    Returns:
        The path written, as a string.

    Example:
        >>> score_histogram(all_scores=[1.0, 2.0, 3.0], kept_scores=[3.0], path="h.png")
        'h.png'
    """
    # A bare Figure on the Agg canvas: no display needed on servers/CI, and pyplot's global
    # backend (a user's notebook) is left untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    kept = _finite(kept_scores)
    everything = _finite(all_scores) if all_scores is not None else None
    pool = (everything or []) + kept
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if pool:
        lo, hi = min(pool), max(pool)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]
        if everything is not None:
            ax.hist(everything, bins=edges, color="#9aa5b1", label=f"all rows ({len(everything)})")
        ax.hist(kept, bins=edges, color="#d9480f", alpha=0.85, label=f"kept rows ({len(kept)})")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no finite scores", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(column)
    ax.set_ylabel("rows")
    ax.set_title("SelectIT scores: all rows vs kept rows")
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")
    logger.debug("wrote score histogram to %s", path)
    return os.fspath(path)
