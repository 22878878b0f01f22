"""hf-selectit: SelectIT instruction-data selection for Hugging Face `datasets`.

Public names are imported lazily so that `import hf_selectit` (and `hf-selectit --help`) do not
pay for torch/transformers/datasets imports.

Example:
    >>> from datasets import load_dataset
    >>> from hf_selectit import SelectITScorer, select_top
    >>> ds = load_dataset("json", data_files="alpaca.json", split="train")
    >>> ds = ds.map(SelectITScorer(), batched=True)        # embedded SmolLM2 by default
    >>> subset = select_top(ds, ratio=0.2)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# submodule -> the public names it defines
_LAZY = {name: module for module, names in {
    "scorer": "SelectITScorer selectit_score",
    "methods.ifd": "IFDScorer ReverseIFDScorer",
    "methods.alpagasus": "AlpaGasusScorer",
    "methods.deita": "DeitaScorer",
    "select": "select_top select_random fuse_models",
    "report": "selection_report SelectionReport",
    "publishing": "publish load_selective",
    "ray_runner": "score_on_ray",
    "config": "IFDConfig ReverseIFDConfig AlpaGasusConfig DeitaConfig RayConfig ScorerConfig ModelConfig "
              "SelectConfig PublishConfig IOConfig RunOptions FusionConfig PipelineConfig METHOD_CONFIGS",
    "options": "load_run_config",
    "errors": "SelectITError",
    "validation": "validate ValidationReport",
}.items() for name in names.split()}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hf_selectit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from .config import (METHOD_CONFIGS, AlpaGasusConfig, DeitaConfig, FusionConfig, IFDConfig, IOConfig,
                         ModelConfig, PipelineConfig, PublishConfig, RayConfig, ReverseIFDConfig, RunOptions,
                         ScorerConfig, SelectConfig)
    from .errors import SelectITError
    from .methods.alpagasus import AlpaGasusScorer
    from .methods.deita import DeitaScorer
    from .methods.ifd import IFDScorer, ReverseIFDScorer
    from .options import load_run_config
    from .publishing import load_selective, publish
    from .ray_runner import score_on_ray
    from .report import SelectionReport, selection_report
    from .scorer import SelectITScorer, selectit_score
    from .select import fuse_models, select_random, select_top
    from .validation import ValidationReport, validate
