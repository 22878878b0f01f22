"""Errors raised by hf-selectit.

Every error derives from :class:`SelectITError` and from the matching built-in, so callers can
catch either `hf_selectit.errors.SchemaError` or plain `KeyError`. Messages name the bad value,
what was expected, and the fix.
"""

from __future__ import annotations


class SelectITError(Exception):
    """Base class of every error raised by hf-selectit."""


class ConfigError(SelectITError, ValueError):
    """An argument or configuration value is invalid (wrong range, unknown name, bad combination).
    When one option is at fault, ``option``, ``value`` and ``expected`` say which, so the loader
    (`hf_selectit.options`) can name where the value came from: the YAML key or the flag."""

    def __init__(self, message: str = "", *, option: "str | None" = None, value: object = None,
                 expected: "str | None" = None) -> None:
        super().__init__(message)
        self.option, self.value, self.expected = option, value, expected


class _ReadableKeyError(SelectITError, KeyError):
    # KeyError's str() wraps the message in quotes; keep it readable.
    def __str__(self) -> str:  # pragma: no cover - trivial
        return str(self.args[0]) if self.args else ""


class SchemaError(_ReadableKeyError):
    """The dataset's columns do not match any supported schema, or a mapped column is missing."""


class RatingTokenError(SelectITError, ValueError):
    """The tokenizer cannot give one single token for each rating digit 1..5."""


class ModelLoadError(SelectITError, RuntimeError):
    """The scoring model or its tokenizer could not be loaded."""


class ScoreColumnError(_ReadableKeyError):
    """A score column needed by the selection step is missing."""


class PublishError(SelectITError, RuntimeError):
    """A publish did not complete; the message says what exists on the Hub afterwards."""


class VersionExistsError(PublishError):
    """The version tag already exists and `overwrite=True` was not given."""


class ShardMergeError(SelectITError, RuntimeError):
    """The scored parts of a run do not hold every input row exactly once."""


class OutputLockedError(SelectITError, RuntimeError):
    """Another live run is writing the same output (its work directory's lock names it)."""


class OutputWriteError(SelectITError, OSError):
    """A file or folder could not be written (full disk, read-only folder, ...); the message names
    the path, the cause and what is at the path now (the previous content, or nothing)."""
