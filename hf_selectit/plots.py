"""The score histogram committed with every published version (all rows vs kept rows)."""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

HISTOGRAM_FILENAME = "selectit_histogram.png"
KEPT_COLOR = "#e8590c"      # filled bars: the kept rows
ALL_COLOR = "#212529"       # outline: every scored row
CUTOFF_COLOR = "#1c7ed6"    # dashed line: where the selection cut


def _finite(values: Sequence) -> list[float]:
    # Rows that failed to score carry NaN/None; they are counted in the report, not plotted.
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def agg_figure(**kwargs: Any) -> Any:
    """A bare Figure on the Agg canvas: no display needed on servers/CI, and pyplot's global
    backend (a user's notebook) is left untouched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return FigureCanvasAgg(Figure(dpi=100, **kwargs)).figure


def hist_edges(values: Sequence, bins: int) -> Optional[np.ndarray]:
    """`bins` equal bins from the least to the greatest finite value (one unit wide if all are equal;
    the last edge exactly the greatest, so it is drawn); None when no value is finite."""
    pool = _finite(values)
    return np.histogram_bin_edges(pool, bins) if pool else None


def score_histogram(*, all_scores: Optional[Sequence[float]], kept_scores: Sequence[float],
                    path: str | os.PathLike, column: str = "score", bins: int = 40,
                    cutoff: Optional[float] = None) -> str:
    """Draw a histogram of the scores of all rows (an outline; None: unknown) and of the kept rows
    (filled bars) into a PNG file; returns its path. `bins` are shared by both series so their
    bars line up; `cutoff` (the worst kept score, or the threshold) is drawn as a dashed line."""
    fig = agg_figure(figsize=(7, 4))
    plot_scores(fig.add_subplot(1, 1, 1), all_scores=all_scores, kept_scores=kept_scores,
                column=column, bins=bins, cutoff=cutoff)
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")
    logger.debug("wrote score histogram to %s", path)
    return os.fspath(path)


def plot_scores(ax: Any, *, all_scores: Optional[Sequence[float]], kept_scores: Sequence[float],
                column: str = "score", bins: int = 40, cutoff: Optional[float] = None) -> None:
    """Draw the histogram of :func:`score_histogram` on a matplotlib `Axes` (same arguments)."""
    from matplotlib.ticker import MaxNLocator

    kept = _finite(kept_scores)
    everything = _finite(all_scores) if all_scores is not None else None
    has_cut = cutoff is not None and math.isfinite(cutoff)
    if everything or kept:
        edges = hist_edges((everything or []) + kept + ([cutoff] if has_cut else []), bins)
        ax.hist(kept, bins=edges, color=KEPT_COLOR, label=f"kept rows ({len(kept)})", zorder=2)
        if everything is not None:
            # An outline over the filled bars: where every row of a bin is kept, both still show.
            ax.hist(everything, bins=edges, histtype="step", color=ALL_COLOR, linewidth=1.6,
                    label=f"all rows ({len(everything)})", zorder=3)
        if has_cut:
            ax.axvline(cutoff, color=CUTOFF_COLOR, linestyle="--", linewidth=1.4, zorder=4,
                       label=f"selection cut-off ({cutoff:.4g})")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no finite scores", ha="center", va="center", transform=ax.transAxes)
    # Row counts are whole numbers; the default locator gives 0.5 steps for small counts.
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(column)
    ax.set_ylabel("rows")
    ax.set_title("Scores: all rows (outline) vs kept rows (filled)")


def selection_cutoff(rule: Optional[dict], kept_scores: Sequence) -> Optional[float]:
    """The score where a recorded selection cut: its threshold, or the worst kept score of a
    top-ratio/top-k selection without groups (the lowest; the highest when lower is better);
    None for random or per-group selections."""
    if not rule or rule.get("method") == "random" or rule.get("by"):
        return None
    if rule.get("rule") == "threshold" and rule.get("threshold") is not None:
        return float(rule["threshold"])
    kept = _finite(kept_scores)
    if not kept or rule.get("rule") not in ("top_ratio", "top_k"):
        return None
    return max(kept) if rule.get("higher_is_better") is False else min(kept)
