"""The validation figure: score distributions of the good and the bad items, one panel per score.

Separate from :mod:`hf_selectit.plots` (the selection histogram) so each figure has one owner.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Mapping, Optional, Sequence

import numpy as np

from .plots import agg_figure, hist_edges

logger = logging.getLogger(__name__)

VALIDATION_PLOT_FILENAME = "selectit_validation.png"
_COLORS = ("#2b8a3e", "#c92a2a")
_MAX_PANELS = 6


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
            ax.scatter(second[ok], first[ok], s=8, alpha=0.5, color=_COLORS[0])
            ax.set_xlabel(labels[0])
            ax.set_ylabel(name)
        else:
            a, b = first[np.isfinite(first)], second[np.isfinite(second)]
            edges = hist_edges(np.concatenate([a, b]), bins)
            if edges is not None:
                for values, label, color in ((a, labels[0], _COLORS[0]), (b, labels[1], _COLORS[1])):
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
    from .atomic import replacing

    with replacing(path, what="the validation figure") as tmp:
        fig.savefig(os.fspath(tmp), format="png")
    logger.debug("wrote validation plot to %s", path)
    return os.fspath(path)
