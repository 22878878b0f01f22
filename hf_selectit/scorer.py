"""The SelectIT scorer's historical import path (the method lives in `hf_selectit.methods.selectit`)."""

from __future__ import annotations

from .engine import default_batch_tokens
from .engine import pad_left as _pad_left  # noqa: F401  (kept for code that imported the old helper)
from .methods.selectit import OUTPUT_NAMES, SelectITScorer, selectit_score

__all__ = ["SelectITScorer", "selectit_score", "default_batch_tokens", "OUTPUT_NAMES"]
