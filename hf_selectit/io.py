"""Dataset inputs and outputs for the CLI and the pipeline.

An input is a Hub dataset id, a local JSON / JSONL / Parquet / CSV file, a `save_to_disk`
folder, or a folder of data files (such as one written by :func:`hf_selectit.publish` to a local
directory). An output is a `save_to_disk` folder, a `.parquet` file or a `.jsonl` file.

`datasets` is imported inside the functions so that `hf-selectit --help` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from .atomic import replacing
from .config import OUTPUT_FORMATS
from .errors import ConfigError

logger = logging.getLogger(__name__)

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
# Suffixes that make a name a file path, never a Hub id ("data.jsonl", "out.parquet").
DATA_SUFFIXES = (*FILE_BUILDERS, ".arrow", ".tsv", ".txt", ".gz", ".zst", ".yaml", ".yml")


# ------------------------------------------------------------------ local or Hub?


def looks_like_path(name: str) -> bool:
    """Whether ``name`` can only mean a local path (a Hub id is ``name`` or ``namespace/name``)."""
    return (os.path.isabs(name) or name.startswith((".", "~")) or "\\" in name or name.count("/") > 1
            or Path(name).suffix.lower() in DATA_SUFFIXES)


def is_local_path(name: Union[str, "os.PathLike[str]"], *, for_output: bool = False) -> bool:
    """THE decision "local path or Hub id?", used by every entry point: an ``os.PathLike`` or a
    name that exists here is local, and so is an output to create (`for_output`) that looks like a
    path (:func:`looks_like_path`). An input that looks like one but does not exist, or an empty
    name, is a ConfigError, raised without any network call. Anything else is a Hub id."""
    if isinstance(name, os.PathLike):
        return True
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{name!r} is not a path or a Hub id.")
    if Path(os.path.expanduser(name)).exists() or (for_output and looks_like_path(name)):
        return True
    if looks_like_path(name):
        raise ConfigError(f"No such file or Hub dataset: {name!r}. Give an existing local file "
                          "(.json, .jsonl, .parquet, .csv) or folder, or a Hub dataset id 'user/name'.")
    return False


# ------------------------------------------------------------------------ loading


def load_input(source: str, *, split: str = "train", config_name: Optional[str] = None,
               revision: Optional[str] = None, limit: Optional[int] = None) -> Any:
    """Load one split (a single local file has one, ``train``) of a dataset, the first `limit`
    rows, with the provenance recorded beside it (sidecar or the Hub's selectit.json).

    Raises:
        ConfigError: unknown file type, missing split, or a path that looks local but does not exist.
    """
    import datasets

    from .provenance import attach, read_hub_provenance, read_sidecar

    if is_local_path(source):
        path = Path(os.path.expanduser(source))
        if path.is_file():
            builder = FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise ConfigError(f"input={source!r}: unsupported file type {path.suffix!r}; expected "
                                  f"one of {sorted(FILE_BUILDERS)} or a save_to_disk folder.")
            ds = _load_file(path, builder)
        elif (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise ConfigError(f"split={split!r} not found in {source!r}. Splits: {sorted(ds)}. "
                                      "Pass --split.")
                ds = ds[split]
        else:
            ds = _load_folder(path, name=config_name, split=split)
        extra = read_sidecar(path)
    else:
        ds = _load_hub(source, name=config_name, split=split, revision=revision)
        extra = read_hub_provenance(source, revision=revision)
    if len(ds) == 0:
        raise ConfigError(f"{source}: has no rows; nothing to do.")
    if extra:
        ds = attach(ds, **extra)
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))
    return ds


def _load_hub(source: str, *, name: Optional[str], split: str, revision: Optional[str]) -> Any:
    """A Hub dataset; "not there" and "Hub unreachable" become ConfigErrors that say so."""
    import datasets

    try:
        return datasets.load_dataset(source, name=name, split=split, revision=revision)
    except (datasets.exceptions.DatasetNotFoundError, FileNotFoundError) as exc:
        raise ConfigError(f"No such file or Hub dataset: {source!r} ({_root_message(exc)}). Give an "
                          "existing local file or folder, or a Hub dataset id 'user/name' you can "
                          "read (private/gated: log in with `hf auth login`).") from exc
    except ConnectionError as exc:
        raise ConfigError(f"{source!r} is not a local file or folder, and the Hub could not be reached "
                          f"to load it as a dataset ({_root_message(exc)}).") from exc


def _load_folder(path: Path, *, name: Optional[str], split: str) -> Any:
    """A folder of data files (a local publish, a cloned dataset repo) as a Dataset."""
    import datasets

    try:
        with _datasets_logs_quiet():
            return datasets.load_dataset(str(path), name=name, split=split)
    except (datasets.exceptions.DatasetGenerationError, FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"{path}: is a folder but not a dataset ({_root_message(exc)}). Give a "
                          "save_to_disk folder, a folder of .json/.jsonl/.parquet/.csv data files, or "
                          "one data file.") from exc


def _load_file(path: Path, builder: str) -> Any:
    """One local data file as a Dataset; malformed or empty files become ConfigErrors in file terms."""
    import datasets
    import pyarrow as pa

    _check_not_empty(path, builder)
    try:
        with _datasets_logs_quiet():
            return datasets.load_dataset(builder, data_files=str(path), split="train")
    except (datasets.exceptions.DatasetGenerationError, pa.ArrowException, ValueError) as exc:
        problem = _diagnose(path, builder) or f"could not be read as {builder}: {_root_message(exc)}"
        raise ConfigError(f"{path}: {problem}") from exc


@contextlib.contextmanager
def _datasets_logs_quiet() -> Iterator[None]:
    """`datasets`' logs at CRITICAL while a local file loads: its json builder logs a traceback
    before raising, which our ConfigError says in file-and-line terms. The public verbosity setting
    is its only switch (none per message)."""
    from datasets.utils import logging as datasets_logging

    level = datasets_logging.get_verbosity()
    datasets_logging.set_verbosity(datasets_logging.CRITICAL)
    try:
        yield
    finally:
        datasets_logging.set_verbosity(level)


def _check_not_empty(path: Path, builder: str) -> None:
    if builder == "parquet":
        return
    with path.open("rb") as fh:
        lines = [line for _, line in zip(range(2), (ln for ln in fh if ln.strip()))]
    if not lines:
        raise ConfigError(f"{path}: the file is empty (has no rows).")
    if builder == "csv" and len(lines) == 1:
        raise ConfigError(f"{path}: has no rows (only a header line).")


def _diagnose(path: Path, builder: str) -> Optional[str]:
    """The first bad line of a JSON Lines file (or the position of a JSON error), in words."""
    if builder != "json":
        return None
    if path.suffix.lower() == ".jsonl":
        with path.open(encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, start=1):
                try:
                    if line.strip() and not isinstance(json.loads(line), dict):
                        return f"line {number} is not a JSON object (one row per line is expected)."
                except json.JSONDecodeError as exc:
                    return f"line {number} is not valid JSON ({exc.msg}, column {exc.colno})."
        return None
    try:
        json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        # Maybe JSON Lines saved as .json: report the line the parser stopped at.
        return f"line {exc.lineno} is not valid JSON ({exc.msg}, column {exc.colno})."
    return None


def _root_message(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return " ".join(str(exc).split())[:300]


def resolve_output_format(output: str, output_format: str = "auto") -> str:
    """The concrete format ('disk', 'parquet' or 'jsonl') of an output."""
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"output_format={output_format!r} is invalid: expected one of "
                          f"{list(OUTPUT_FORMATS)}.")
    if output_format != "auto":
        return output_format
    return {".parquet": "parquet", ".jsonl": "jsonl"}.get(Path(output).suffix.lower(), "disk")


def is_folder_output(output: str, fmt: str) -> bool:
    """Whether an output of concrete format ``fmt`` is a folder."""
    return fmt == "disk" or (fmt == "parquet" and Path(output).suffix.lower() != ".parquet")


def check_output_path(output: str, *, output_format: str = "auto", option: str = "output") -> str:
    """Refuse, before any work, an output path that cannot be written as asked (`option` names it
    in the message); return the concrete format."""
    fmt = resolve_output_format(output, output_format)
    path = Path(os.path.expanduser(output))
    folder = is_folder_output(output, fmt)
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"{option}={output!r} is invalid: {os.fspath(parent)!r} is a file, so "
                          "nothing can be written under it. Choose another path.")
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"{option}={output!r} is an existing file, but a folder (save_to_disk) output "
                          "needs a folder path. Give a new path, or end it in .parquet or .jsonl.")
    if not folder and path.is_dir():
        raise ConfigError(f"{option}={output!r} is an existing folder, but a {fmt} output is a file. "
                          "Give a file path.")
    if folder and path.is_dir() and any(path.iterdir()) and not any(
            (path / name).exists() for name in ("state.json", "dataset_dict.json", "selectit.json")):
        raise ConfigError(f"{option}={output!r} is a folder that holds files but no saved dataset; "
                          "replacing it would delete them. Give a new or empty folder.")
    return fmt


def save_output(ds: Any, output: str, *, output_format: str = "auto") -> str:
    """Write a dataset as a ``save_to_disk`` folder, a Parquet file (or a folder of them: format
    'parquet' without the suffix) or a JSONL file, all-or-nothing; returns the concrete format.

    The provenance goes with the data in every format (``selectit.json`` inside a folder,
    ``FILE.parquet.selectit.json`` beside a file); :func:`load_input` reads it back.

    Raises:
        ConfigError: unknown format, or a path that cannot hold it (:func:`check_output_path`).
        OutputWriteError: the write failed (full disk, read-only folder).
    """
    from .provenance import write_sidecar

    fmt = check_output_path(output, output_format=output_format)
    folder = is_folder_output(output, fmt)
    with replacing(output) as tmp:
        if fmt == "parquet" and folder:
            # A folder of parquet files and its selectit.json (a Hub-like layout): load_dataset(folder),
            # ray.data.read_parquet and hf-selectit select/publish all read it.
            tmp.mkdir()
            ds.to_parquet(os.fspath(tmp / "data-00000-of-00001.parquet"))
        elif fmt == "parquet":
            ds.to_parquet(os.fspath(tmp))
        elif fmt == "jsonl":
            ds.to_json(os.fspath(tmp), lines=True, force_ascii=False)
        else:
            ds.save_to_disk(os.fspath(tmp))
        # Complete before the data is renamed into place, so the two always match.
        write_sidecar(ds, tmp if folder else output, fmt)
    logger.info("wrote %d rows to %s (%s)", len(ds), output, fmt)
    return fmt
