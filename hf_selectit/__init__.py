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

# name -> submodule that defines it
_LAZY = {
    "SelectITScorer": "scorer",
    "selectit_score": "scorer",
    "IFDScorer": "methods.ifd",
    "ReverseIFDScorer": "methods.ifd",
    "IFDConfig": "config",
    "ReverseIFDConfig": "config",
    "AlpaGasusScorer": "methods.alpagasus",
    "DeitaScorer": "methods.deita",
    "AlpaGasusConfig": "config",
    "DeitaConfig": "config",
    "select_top": "select",
    "select_random": "select",
    "fuse_models": "select",
    "selection_report": "report",
    "SelectionReport": "report",
    "publish": "publishing",
    "load_selective": "publishing",
    "score_on_ray": "ray_runner",
    "RayConfig": "config",
    "ScorerConfig": "config",
    "ModelConfig": "config",
    "SelectConfig": "config",
    "PublishConfig": "config",
    "IOConfig": "config",
    "RunOptions": "config",
    "FusionConfig": "config",
    "PipelineConfig": "config",
    "METHOD_CONFIGS": "config",
    "load_run_config": "options",
    "SelectITError": "errors",
    "validate": "validation",
    "ValidationReport": "validation",
}

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
    from .ray_runner import score_on_ray
    from .config import RayConfig
    from .config import (METHOD_CONFIGS, FusionConfig, IOConfig, ModelConfig, PipelineConfig, PublishConfig,
                         RunOptions, ScorerConfig, SelectConfig)
    from .options import load_run_config
    from .errors import SelectITError
    from .publishing import load_selective, publish
    from .scorer import SelectITScorer, selectit_score
    from .methods.ifd import IFDScorer, ReverseIFDScorer
    from .config import IFDConfig, ReverseIFDConfig
    from .config import AlpaGasusConfig, DeitaConfig
    from .methods.alpagasus import AlpaGasusScorer
    from .methods.deita import DeitaScorer
    from .report import SelectionReport, selection_report
    from .select import fuse_models, select_random, select_top
    from .validation import ValidationReport, validate
