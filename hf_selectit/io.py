"""Dataset inputs and outputs for the CLI and the pipeline.

An input is a Hub dataset id, a local JSON / JSONL / Parquet / CSV file, a `save_to_disk`
folder, or a folder of data files (such as one written by :func:`hf_selectit.publish` to a local
directory). An output is a `save_to_disk` folder, a `.parquet` file or a `.jsonl` file.

`datasets` is imported inside the functions so that `hf-selectit --help` stays fast.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import ConfigError

logger = logging.getLogger(__name__)

FILE_BUILDERS = {
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}
OUTPUT_FORMATS = ("auto", "disk", "parquet", "jsonl")


@dataclass
class IOConfig:
    """Where rows come from and where results go (shared by every subcommand)."""

    input: Optional[str] = field(
        default=None,
        metadata={"help": "Hub dataset id, local .json/.jsonl/.parquet/.csv file, save_to_disk "
                          "folder, or a folder of data files."},
    )
    split: str = field(default="train", metadata={"help": "Split to read (Hub ids and folders)."})
    config_name: Optional[str] = field(
        default=None, metadata={"help": "Dataset configuration name on the Hub (load_dataset's name=)."}
    )
    revision: Optional[str] = field(
        default=None, metadata={"help": "Dataset revision (branch, tag or commit) on the Hub."}
    )
    limit: Optional[int] = field(
        default=None, metadata={"help": "Use only the first N rows (quick runs)."}
    )
    output: Optional[str] = field(
        default=None,
        metadata={"help": "Where to write the result: a folder (save_to_disk), FILE.parquet or "
                          "FILE.jsonl."},
    )
    output_format: str = field(
        default="auto",
        metadata={"help": "auto (from the output's suffix: .parquet, .jsonl, else a "
                          "save_to_disk folder), disk, parquet or jsonl."},
    )

    def __post_init__(self) -> None:
        if self.output_format not in OUTPUT_FORMATS:
            raise ConfigError(
                f"output_format={self.output_format!r} is invalid: expected one of {list(OUTPUT_FORMATS)}."
            )
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise ConfigError(f"limit={self.limit!r} is invalid: expected an int >= 1 or None.")


def load_input(
    source: str,
    *,
    split: str = "train",
    config_name: Optional[str] = None,
    revision: Optional[str] = None,
    limit: Optional[int] = None,
) -> Any:
    """Load one split of a dataset from the Hub, a local file or a local folder.

    Args:
        source: Hub dataset id (``user/name``), a local ``.json``/``.jsonl``/``.parquet``/``.csv``
            file, a ``save_to_disk`` folder (Dataset or DatasetDict), or a folder of data files.
        split: split to read from Hub ids, DatasetDicts and data folders. Single local files have
            one split, ``train``.
        config_name: dataset configuration on the Hub (``load_dataset(name=...)``).
        revision: dataset revision on the Hub.
        limit: keep only the first ``limit`` rows.

    Returns:
        A ``datasets.Dataset``.

    Raises:
        ConfigError: unknown file type, missing split, or a path that looks local but does not exist.

    Example:
        >>> ds = load_input("alpaca.json", limit=100)
    """
    import datasets

    path = Path(os.path.expanduser(source))
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ConfigError(
                f"input={source!r}: unsupported file type {path.suffix!r}; expected one of "
                f"{sorted(FILE_BUILDERS)} or a save_to_disk folder."
            )
        ds = datasets.load_dataset(builder, data_files=str(path), split="train")
    elif path.is_dir():
        if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            loaded = datasets.load_from_disk(str(path))
            ds = _pick_split(loaded, split, source)
        else:
            ds = datasets.load_dataset(str(path), name=config_name, split=split)
    elif source.startswith((".", "/", "~")) or source.count("/") > 1:
        # A Hub id has at most one slash; anything else was meant as a local path.
        raise ConfigError(
            f"input={source!r} does not exist: expected a local file or folder, or a Hub dataset "
            "id such as 'user/name'."
        )
    else:
        ds = datasets.load_dataset(source, name=config_name, split=split, revision=revision)
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))
    return ds


def _pick_split(loaded: Any, split: str, source: str) -> Any:
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ConfigError(
                f"split={split!r} not found in {source!r}. Splits: {sorted(loaded)}. Pass --split."
            )
        return loaded[split]
    return loaded


def resolve_output_format(output: str, output_format: str = "auto") -> str:
    """The concrete format ('disk', 'parquet' or 'jsonl') of an output path.

    Args:
        output: output path.
        output_format: 'auto' (from the suffix) or an explicit format.

    Returns:
        'disk', 'parquet' or 'jsonl'.

    Raises:
        ConfigError: unknown format.

    Example:
        >>> resolve_output_format("scored.parquet")
        'parquet'
    """
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(
            f"output_format={output_format!r} is invalid: expected one of {list(OUTPUT_FORMATS)}."
        )
    if output_format != "auto":
        return output_format
    suffix = Path(output).suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".jsonl":
        return "jsonl"
    return "disk"


def save_output(ds: Any, output: str, *, output_format: str = "auto") -> str:
    """Write a dataset as a ``save_to_disk`` folder, a Parquet file or a JSONL file.

    The dataset's ``info`` (which carries the scorers' provenance) survives only in the folder
    format; use it for anything that is read back by ``select`` or ``publish``.

    Args:
        ds: the dataset.
        output: destination path.
        output_format: 'auto', 'disk', 'parquet' or 'jsonl'.

    Returns:
        The concrete format written.

    Raises:
        ConfigError: unknown format.

    Example:
        >>> save_output(ds, "scored/")          # save_to_disk folder
    """
    fmt = resolve_output_format(output, output_format)
    parent = Path(output).parent
    parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        ds.to_parquet(output)
    elif fmt == "jsonl":
        ds.to_json(output, lines=True, force_ascii=False)
    else:
        ds.save_to_disk(output)
    logger.info("wrote %d rows to %s (%s)", len(ds), output, fmt)
    return fmt
