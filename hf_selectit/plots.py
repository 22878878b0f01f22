"""The figures: the score histogram committed with every published version (all rows vs kept
rows), and the validation figure (score distributions of the good and the bad items)."""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .atomic import replacing

logger = logging.getLogger(__name__)

HISTOGRAM_FILENAME = "selectit_histogram.png"
VALIDATION_PLOT_FILENAME = "selectit_validation.png"
KEPT_COLOR = "#e8590c"      # filled bars: the kept rows
ALL_COLOR = "#212529"       # outline: every scored row
CUTOFF_COLOR = "#1c7ed6"    # dashed line: where the selection cut
GROUP_COLORS = ("#2b8a3e", "#c92a2a")  # validation: the good items, the bad ones
_MAX_PANELS = 6


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
    # Written in place: it goes into the publisher's staging folder, which is moved whole.
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


def validation_plot(series: Mapping[str, tuple], *, path: "str | os.PathLike",
                    labels: Sequence[str] = ("good", "the rest"), title: str = "",
                    figures: Optional[Mapping[str, Mapping]] = None, metric: str = "", scatter: bool = False,
                    bins: int = 30) -> str:
    """Draw, for each score column, the distributions of two groups (or a scatter against a rating).

    `series` maps a column to (values of the good items, values of the bad items), or with
    `scatter` to (scores, ratings); `labels` names the two groups (the rating alone with
    `scatter`); `figures` maps a column to its result row (``value``, ``ci_low``, ``ci_high``,
    ``n``), shown in its panel's title named `metric` (e.g. "ROC-AUC"). Returns the path written."""
    names = list(series)[:_MAX_PANELS]
    if len(series) > _MAX_PANELS:
        logger.warning("Validation plot shows the first %d of %d score columns.", _MAX_PANELS, len(series))
    cols = min(len(names), 3) or 1
    rows = max(1, math.ceil(len(names) / cols))
    fig = agg_figure(figsize=(5.2 * cols, 3.8 * rows + 0.6))
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        first, second = (np.asarray(v, dtype=np.float64) for v in series[name])
        if scatter:
            ok = np.isfinite(first) & np.isfinite(second)
            ax.scatter(second[ok], first[ok], s=8, alpha=0.5, color=GROUP_COLORS[0])
            ax.set_xlabel(labels[0])
            ax.set_ylabel(name)
        else:
            a, b = first[np.isfinite(first)], second[np.isfinite(second)]
            edges = hist_edges(np.concatenate([a, b]), bins)
            if edges is not None:
                for values, label, color in zip((a, b), labels, GROUP_COLORS):
                    ax.hist(values, bins=edges, alpha=0.55, color=color, density=True,
                            label=f"{label} ({len(values)})")
                    if len(values):
                        ax.axvline(float(np.median(values)), color=color, linestyle="--", linewidth=1.2)
                ax.legend(fontsize=8)
            else:
                ax.text(0.5, 0.5, "no finite scores", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlabel(name)
            ax.set_ylabel("density (dashed: median)")
        row = (figures or {}).get(name)
        if row is not None and row.get("value") is not None:
            ci = "" if row.get("ci_low") is None else f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
            ax.set_title(f"{metric} {row['value']:.3f}{ci}, n={row['n']}", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with replacing(path, what="the validation figure") as tmp:  # a user's path: whole or not at all
        fig.savefig(os.fspath(tmp), format="png")
    logger.debug("wrote validation plot to %s", path)
    return os.fspath(path)
